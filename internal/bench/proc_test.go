package bench

import (
	"os"
	"testing"
	"time"
)

func TestParseRSS(t *testing.T) {
	got, err := parseRSS([]byte("Name:\tlongpoll\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t7\n"))
	if err != nil || got != 12345*1024 {
		t.Fatalf("parseRSS = %d, %v", got, err)
	}
	for _, bad := range []string{"Name:\tx\n", "VmRSS:\t12 MB\n", "VmRSS:\tx kB\n"} {
		if _, err := parseRSS([]byte(bad)); err == nil {
			t.Errorf("parseRSS(%q): no error", bad)
		}
	}
}

func TestParseCPU(t *testing.T) {
	// A command name with spaces and parentheses; utime 250, stime 50.
	stat := "4242 (a b) c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 123 456 789"
	got, err := parseCPU([]byte(stat))
	if err != nil || got != 3*time.Second {
		t.Fatalf("parseCPU = %v, %v; want 3s", got, err)
	}
	for _, bad := range []string{"4242 no parens", "1 (x) S 1 2", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 x 0"} {
		if _, err := parseCPU([]byte(bad)); err == nil {
			t.Errorf("parseCPU(%q): no error", bad)
		}
	}
}

func TestReadOwnProcess(t *testing.T) {
	rss, err := ReadRSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Fatalf("ReadRSS = %d, %v", rss, err)
	}
	if _, err := ReadCPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadRSS(-1); err == nil {
		t.Fatal("ReadRSS(-1): no error")
	}
}
