package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSlowSenderIsCut: a client that never finishes its headers is
// disconnected after --read-header-timeout, while others are served.
func TestSlowSenderIsCut(t *testing.T) {
	s := startServer(t, nil, "--read-header-timeout", "500ms")
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v1/poll?topic=a HTTP/1.1\r\nHost: x\r\n")
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	start := time.Now()
	b, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("the slow sender was not cut within 20 s: %v", err)
	}
	t.Logf("slow sender cut after %v (%d bytes: %q)", time.Since(start), len(b), b)
	if st, _ := get(t, s.url+"/healthz", ""); st != 200 {
		t.Fatalf("healthz %d", st)
	}
}

// TestOversizedHeaders: headers over 64 KiB get 431, and the server stays up.
func TestOversizedHeaders(t *testing.T) {
	s := startServer(t, nil)
	req, _ := http.NewRequest("GET", s.url+"/v1/poll?topic=a&timeout=0", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 100<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", resp.StatusCode)
	}
	if st, _ := get(t, s.url+"/v1/poll?topic=a&timeout=0", ""); st != 200 {
		t.Fatalf("poll after oversized headers: %d", st)
	}
}

// TestTLSReload: SIGHUP loads a new certificate for new connections.
func TestTLSReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool1 := writeSelfSigned(t, certFile, keyFile)
	s := startServer(t, nil, "--tls-cert", certFile, "--tls-key", keyFile)
	addr := strings.TrimPrefix(s.url, "http://")
	// Each certificate has its own key: a pool trusts one of them alone.
	handshake := func(pool *x509.CertPool) error {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool})
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := handshake(pool1); err != nil {
		t.Fatal(err)
	}
	pool2 := writeSelfSigned(t, certFile, keyFile)
	held, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool1})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	s.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, s, "reloaded the TLS certificate")
	if err := handshake(pool2); err != nil {
		t.Fatalf("new certificate not served after SIGHUP: %v", err)
	}
	// The connection opened before the reload still works.
	fmt.Fprintf(held, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	line, err := bufio.NewReader(held).ReadString('\n')
	if err != nil || !strings.Contains(line, "200") {
		t.Fatalf("connection from before the reload: %q %v", line, err)
	}
}
