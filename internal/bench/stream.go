package bench

import (
	"bufio"
	"net"
	"time"
)

// A stream carries one subscriber's polls over one connection. send
// queues a request; the reads that follow return its reply. Where the
// system allows (stream_linux.go), the request is written inside the
// first of those reads, so that the read waits for the reply before it
// reads, rather than first trying a read that finds nothing; the load
// generator then makes one read system call per reply instead of two,
// and no scheduler call on either.
type stream interface {
	Read(p []byte) (int, error)
	send(req []byte) error
	// arrived returns the kernel's receive time of the last data read,
	// where the system gives it.
	arrived() (time.Time, bool)
}

// roundTrip sends one request and reads its reply in full.
func roundTrip(s stream, br *bufio.Reader, req []byte, rep *reply) error {
	if br.Buffered() > 0 { // not expected: a reply with no request
		return errMalformed
	}
	if err := s.send(req); err != nil {
		return err
	}
	return readReply(br, rep)
}

// netStream writes a request at once and reads through the connection.
type netStream struct{ net.Conn }

func (s netStream) send(req []byte) error {
	_, err := s.Write(req)
	return err
}

func (netStream) arrived() (time.Time, bool) { return time.Time{}, false }
