// Command pipeline measures what a pipelined small request costs a
// running server: it pipelines -n requests for -path over one
// connection, -batch a write, reads every reply, and prints the server
// process's CPU time (from /proc/PID/stat) per request.
//
//	longpoll serve --store memory --transport dense &
//	go run ./bench/pipeline -pid $! -path /healthz
//
// Linux only (it reads /proc).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "")
	pid := flag.Int("pid", 0, "the server's process id")
	n := flag.Int("n", 200000, "requests")
	path := flag.String("path", "/healthz", "the requests' target")
	batch := flag.Int("batch", 100, "requests a write")
	flag.Parse()
	c, err := net.Dial("tcp", *addr)
	if err != nil {
		panic(err)
	}
	req := "GET " + *path + " HTTP/1.1\r\nHost: x\r\n\r\n"
	br := bufio.NewReaderSize(c, 1<<16)
	done := make(chan struct{})
	go func() {
		for i := 0; i < *n; i++ {
			// One reply: its head, then a Content-Length body.
			cl := 0
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					panic(err)
				}
				if line == "\r\n" {
					break
				}
				if strings.HasPrefix(strings.ToLower(line), "content-length:") {
					cl, _ = strconv.Atoi(strings.TrimSpace(line[15:]))
				}
			}
			io.CopyN(io.Discard, br, int64(cl))
		}
		close(done)
	}()
	cpu0 := cpu(*pid)
	t0 := time.Now()
	w := bufio.NewWriterSize(c, 1<<16)
	for i := 0; i < *n; i += *batch {
		for j := 0; j < *batch; j++ {
			w.WriteString(req)
		}
		w.Flush()
	}
	<-done
	el := time.Since(t0)
	cpu1 := cpu(*pid)
	fmt.Printf("%d requests in %v; server CPU %.1f us/request\n", *n, el, float64(cpu1-cpu0)*1e6/100/float64(*n))
}

// cpu returns the process's user and system time in clock ticks (1/100 s).
func cpu(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}
