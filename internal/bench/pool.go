package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"
)

// pool is the worker processes of a run.
type pool struct {
	workers []*workerProc
}

type workerProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr tail
	last   atomic.Pointer[event]
	result chan *workerResult // receives once, nil when the worker failed
	exited chan struct{}
}

// startPool starts cfg.Workers copies of this executable as workers and
// splits the subscribers among them.
func startPool(cfg *Config, topics []string) (*pool, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this executable to start workers: %w", err)
	}
	var addrs []string
	if cfg.SourceAddrs > 0 {
		addrs = sourceAddrs(cfg.SourceAddrs)
	}
	p := &pool{}
	first := 0
	for i := range cfg.Workers {
		count := cfg.Subscribers / cfg.Workers
		if i < cfg.Subscribers%cfg.Workers {
			count++
		}
		j := job{
			Protocol: cfg.Protocol, Transport: cfg.Transport, Servers: cfg.servers, Topics: topics, First: first, Count: count,
			SourceAddrs: addrs, Hold: cfg.PollTimeout, PerNumber: cfg.Scenario == Fanout,
			Unmeasured: uint64(cfg.Warmup), ReadFirst: cfg.ReadFirst, Token: cfg.Token,
		}
		if cfg.SubscriberToken != nil {
			j.Tokens = make([]string, count)
			for k := range j.Tokens {
				tok, err := cfg.SubscriberToken(first + k)
				if err != nil {
					p.kill()
					return nil, fmt.Errorf("token of subscriber %d: %w", first+k, err)
				}
				j.Tokens[k] = tok
			}
		}
		first += count
		w, err := startWorker(exe, &j)
		if err != nil {
			p.kill()
			return nil, err
		}
		p.workers = append(p.workers, w)
	}
	return p, nil
}

func startWorker(exe string, j *job) (*workerProc, error) {
	cmd := exec.Command(exe, "bench")
	cmd.Env = append(withoutEnv(os.Environ(), WorkerEnv), WorkerEnv+"=1")
	detach(cmd)
	w := &workerProc{cmd: cmd, result: make(chan *workerResult, 1), exited: make(chan struct{})}
	cmd.Stderr = &w.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting a bench worker: %w", err)
	}
	w.stdin = stdin
	w.last.Store(&event{})
	go func() {
		defer close(w.exited)
		var res *workerResult
		dec := json.NewDecoder(bufio.NewReader(stdout))
		for {
			var e event
			if err := dec.Decode(&e); err != nil {
				break
			}
			if e.Kind == "r" {
				res = e.Result
			}
			w.last.Store(&e)
		}
		cmd.Wait()
		w.result <- res
	}()
	if err := json.NewEncoder(stdin).Encode(j); err != nil {
		cmd.Process.Kill()
		<-w.exited
		return nil, fmt.Errorf("sending a bench worker its job: %w: %s", err, w.stderr.String())
	}
	return w, nil
}

// totals sums the workers' latest progress.
func (p *pool) totals() (e event) {
	for _, w := range p.workers {
		l := w.last.Load()
		e.Open += l.Open
		e.Polls += l.Polls
		e.Received += l.Received
		e.Errors += l.Errors
	}
	return e
}

// failed returns an error when a worker has exited early.
func (p *pool) failed() error {
	for _, w := range p.workers {
		select {
		case <-w.exited:
			return fmt.Errorf("a bench worker exited early: %s", w.stderr.String())
		default:
		}
	}
	return nil
}

// stop ends every worker's job and merges their results.
func (p *pool) stop(ctx context.Context, published []uint64) (*workerResult, error) {
	msg, _ := json.Marshal(stopMsg{Published: published})
	for _, w := range p.workers {
		w.stdin.Write(append(msg, '\n'))
		w.stdin.Close()
	}
	total := &workerResult{}
	var errs []error
	for _, w := range p.workers {
		var r *workerResult
		select {
		case r = <-w.result:
		case <-ctx.Done():
		case <-time.After(30 * time.Second):
		}
		if r == nil {
			w.cmd.Process.Kill()
			errs = append(errs, fmt.Errorf("%w: %s", errWorkerExited, w.stderr.String()))
			continue
		}
		total.merge(r)
	}
	if len(errs) > 0 {
		return total, errs[0]
	}
	return total, nil
}

// kill ends every worker at once and waits for them.
func (p *pool) kill() {
	var wg sync.WaitGroup
	for _, w := range p.workers {
		wg.Go(func() {
			select {
			case <-w.exited:
				return
			default:
			}
			w.cmd.Process.Kill()
			<-w.exited
		})
	}
	wg.Wait()
}
