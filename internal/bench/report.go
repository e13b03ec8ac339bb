package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
)

// WriteTable prints res as a two-column table.
func WriteTable(w io.Writer, res *Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, a...)) }
	servers, pids := res.servers(), res.pids()
	if len(servers) > 1 {
		row("scenario", "%s (%s at %d nodes: %s; publishes to the first)", res.Scenario, res.Protocol+transportNote(res.Transport), len(servers), strings.Join(servers, ", "))
	} else {
		row("scenario", "%s (%s at %s)", res.Scenario, res.Protocol+transportNote(res.Transport), res.Server)
	}
	row("subscribers", "%d on %d topic(s), %d worker process(es), %d source address(es)", res.Subscribers, res.Topics, res.Workers, res.SourceAddrs)
	row("started", "%s, load average %s -> %s", res.Started.Format("2006-01-02 15:04:05 MST"), orDash(res.LoadBefore), orDash(res.LoadAfter))
	row("elapsed", "%.1f s", res.ElapsedMS/1e3)
	switch {
	case len(res.HeldPerServer) > 1:
		row("held", "%d polls at once (as counted by the servers: %s)", res.Held, perServer(servers, res.HeldPerServer))
	case len(servers) > 1:
		row("held", "%d polls at once (as counted by the servers, summed)", res.Held)
	default:
		row("held", "%d polls at once (as counted by the server)", res.Held)
	}
	if res.RSSHeld > 0 {
		row("server RSS", "%s before, %s held%s", kib(float64(res.RSSBefore)), kib(float64(res.RSSHeld)), paren(pidNote(len(pids), len(servers))))
		if len(pids) > 1 && len(res.RSSBeforePerPID) == len(pids) && len(res.RSSHeldPerPID) == len(pids) {
			for i, pid := range pids {
				row(fmt.Sprintf("  pid %d", pid), "%s before, %s held", kib(float64(res.RSSBeforePerPID[i])), kib(float64(res.RSSHeldPerPID[i])))
			}
		}
		if len(pids) < len(servers) {
			row("RSS per held poll", "%s (over the polls the measured nodes held)", kib(res.RSSPerPoll))
		} else {
			row("RSS per held poll", "%s", kib(res.RSSPerPoll))
		}
	} else if res.Scenario == Capacity && len(pids) == 0 {
		row("RSS per held poll", "unknown: give --server-pid or --spawn")
	}
	if res.Scenario != Capacity {
		row("published", "%d (%d errors)", res.Published, res.PublishErrors)
		if len(res.DeliveredPerServer) > 1 {
			row("delivered", "%d of %d expected (%s)", res.Delivered, res.Expected, perServer(servers, res.DeliveredPerServer))
		} else {
			row("delivered", "%d of %d expected", res.Delivered, res.Expected)
		}
		if res.PublishedPerSec > 0 {
			row("published/s", "%.0f over %.2f s", res.PublishedPerSec, res.PublishSeconds)
		}
		if res.DeliveredPerSec > 0 {
			row("delivered/s", "%.0f over %.2f s", res.DeliveredPerSec, res.WindowSeconds)
		}
		l := res.Latency
		row("latency", "p50 %s  p90 %s  p99 %s  max %s  (mean %s, %d deliveries)",
			msStr(l.P50), msStr(l.P90), msStr(l.P99), msStr(l.Max), msStr(l.Mean), l.Count)
		if a := res.Arrival; a != nil {
			row("arrived", "p50 %s  p90 %s  p99 %s  max %s  (at the socket: kernel receive times of %d deliveries)",
				msStr(a.P50), msStr(a.P90), msStr(a.P99), msStr(a.Max), a.Count)
		}
		if len(res.Rounds) > 0 {
			rounds := func(name string, f func(Round) float64) {
				all := make([]float64, len(res.Rounds))
				parts := make([]string, len(res.Rounds))
				for i, rd := range res.Rounds {
					all[i] = f(rd)
					parts[i] = msStr(all[i])
				}
				row(name, "%s to %s per round (%s)", msStr(slices.Min(all)), msStr(slices.Max(all)), strings.Join(parts, ", "))
			}
			rounds("all received", func(rd Round) float64 { return rd.AllReceived })
			if res.Arrival != nil {
				rounds("all arrived", func(rd Round) float64 { return rd.AllArrived })
			}
			if res.Warmup > 0 {
				row("warm-up", "%d round(s) before these, not measured", res.Warmup)
			}
			if res.ReadFirst {
				row("re-polls", "once every subscriber of a worker had read the round (--read-first)")
			}
		}
		if len(pids) > 0 {
			note := pidNote(len(pids), len(servers))
			if note != "" {
				note += ", "
			}
			row("server CPU", "%.0f ms, %.2f us per delivery (%sin ticks of %d ms)", res.ServerCPUMS, res.CPUPerDelivery, note, 1000/clockTicks)
		} else {
			row("server CPU", "unknown: give --server-pid or --spawn")
		}
		row("lost", "%d", res.Lost)
		row("duplicates", "%d", res.Duplicates)
		row("reordered", "%d", res.Reordered)
		if res.Gaps > 0 {
			row("gaps", "%d reported by the server", res.Gaps)
		}
	}
	if res.LoadCPUMS > 0 && res.WindowSeconds > 0 {
		row("load CPU", "%.0f ms over the %.2f s measured, %.0f%% of one core, %.2f us per delivery",
			res.LoadCPUMS, res.WindowSeconds, res.LoadCPUMS/10/res.WindowSeconds, res.LoadCPUPerDelivery)
	}
	if res.BenchCPUMS > 0 {
		row("bench CPU", "%.0f ms (the bench and its workers, whole run)", res.BenchCPUMS)
	} else {
		row("bench CPU", "not measured on this system")
	}
	row("poll errors", "%d", res.PollErrors)
	if res.FirstError != "" {
		row("first error", "%s", res.FirstError)
	}
	return tw.Flush()
}

// servers returns the URLs of the nodes measured.
func (res *Result) servers() []string {
	if len(res.Servers) > 0 {
		return res.Servers
	}
	return []string{res.Server}
}

// pids returns the pids whose figures the result has.
func (res *Result) pids() []int {
	if len(res.ServerPIDs) > 0 {
		return res.ServerPIDs
	}
	if res.ServerPID > 0 {
		return []int{res.ServerPID}
	}
	return nil
}

// pidNote says whose the server figures are when that is not simply the
// one server's: a sum, or some of the nodes only.
func pidNote(pids, nodes int) string {
	var parts []string
	if pids > 1 {
		parts = append(parts, fmt.Sprintf("sum over %d pids", pids))
	}
	if pids < nodes {
		parts = append(parts, fmt.Sprintf("of %d of the %d nodes", pids, nodes))
	}
	return strings.Join(parts, ", ")
}

func paren(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

// perServer lists n[i] at servers[i].
func perServer[T int | uint64](servers []string, n []T) string {
	parts := make([]string, len(n))
	for i, v := range n {
		s := "?"
		if i < len(servers) {
			s = servers[i]
		}
		parts[i] = fmt.Sprintf("%d at %s", v, s)
	}
	return strings.Join(parts, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func kib(b float64) string {
	if b >= 10<<20 {
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	}
	return fmt.Sprintf("%.1f KiB", b/1024)
}

func msStr(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

// WriteJSONFile writes res, indented, to path.
func WriteJSONFile(path string, res *Result) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadJSONFile reads a result that WriteJSONFile wrote.
func ReadJSONFile(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var res Result
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &res, nil
}

// WriteSVGFile writes the chart of the latency distribution of res, and
// of the others beside it, to path.
func WriteSVGFile(path string, res *Result, others ...*Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	title := fmt.Sprintf("%s: %d subscribers on %d topic(s)", res.Scenario, res.Subscribers, res.Topics)
	series := []Series{{Name: res.Protocol, Hist: res.Histogram}}
	for _, o := range others {
		series = append(series, Series{Name: o.Protocol + " (" + o.Started.Format("15:04") + ")", Hist: o.Histogram})
	}
	if err := WriteSVG(f, title, series); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// transportNote names a run's transport beside its protocol, when it is
// not long polling.
func transportNote(tr string) string {
	if tr == "" || tr == TransportPoll {
		return ""
	}
	return " over " + tr
}
