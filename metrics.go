package longpoll

import "time"

// PollOutcome says how a poll ended.
type PollOutcome string

const (
	OutcomeMessages  PollOutcome = "messages"
	OutcomeTimeout   PollOutcome = "timeout"
	OutcomeCancelled PollOutcome = "cancelled"
	OutcomeShutdown  PollOutcome = "shutdown"
	OutcomeError     PollOutcome = "error"
)

// Metrics receives the server's measurements. Implementations must be safe
// for concurrent use and cheap: they are called on the hot paths.
type Metrics interface {
	// PollsHeld adds delta to the number of polls in flight.
	PollsHeld(delta int)
	// PollEnded records a finished poll and how long it was held.
	PollEnded(outcome PollOutcome, held time.Duration)
	// Published records messages appended (duplicates excluded).
	Published(n int)
	// Delivered records messages handed to a poll reply at now.
	Delivered(now time.Time, msgs []Message)
	// GapReported records one gap in a poll reply.
	GapReported(reason GapReason)
	// BrokerError records a failed broker call; op is "append", "read" or "stat".
	BrokerError(op string)
}

type nopMetrics struct{}

func (nopMetrics) PollsHeld(int)                        {}
func (nopMetrics) PollEnded(PollOutcome, time.Duration) {}
func (nopMetrics) Published(int)                        {}
func (nopMetrics) Delivered(time.Time, []Message)       {}
func (nopMetrics) GapReported(GapReason)                {}
func (nopMetrics) BrokerError(string)                   {}
