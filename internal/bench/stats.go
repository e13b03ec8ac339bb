package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"time"
)

// A Histogram counts durations in buckets whose width is at most 1/64 of
// their lower bound, so any percentile it reports is within 1.6% of the
// true one, whatever the range. Count, Min, Max and the mean are exact.
// Histograms from several processes merge by adding counts. The zero
// Histogram is empty and ready to use; it is not safe for concurrent use.
type Histogram struct {
	counts   []uint64
	n        uint64
	sum      float64 // ns; float so that long runs do not overflow
	min, max int64
}

// subBits sets the precision: values below 1<<subBits ns are exact, and
// above it each power of two is cut into 1<<(subBits-1) buckets.
const (
	subBits  = 7
	subCount = 1 << subBits
	half     = subCount / 2
)

// bucketOf returns the index of v's bucket.
func bucketOf(v int64) int {
	u := uint64(v)
	if u < subCount {
		return int(u)
	}
	e := bits.Len64(u) - subBits // >= 1
	m := u >> e                  // in [half, subCount)
	return subCount + (e-1)*half + int(m-half)
}

// bucketRange returns the smallest and largest value of bucket i.
func bucketRange(i int) (lo, hi int64) {
	if i < subCount {
		return int64(i), int64(i)
	}
	e := (i-subCount)/half + 1
	m := uint64((i-subCount)%half + half)
	return int64(m << e), int64((m+1)<<e - 1)
}

// Record adds one duration; a negative one counts as 0.
func (h *Histogram) Record(d time.Duration) {
	v := max(int64(d), 0)
	i := bucketOf(v)
	if i >= len(h.counts) {
		h.counts = append(h.counts, make([]uint64, i+1-len(h.counts))...)
	}
	h.counts[i]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	if len(o.counts) > len(h.counts) {
		h.counts = append(h.counts, make([]uint64, len(o.counts)-len(h.counts))...)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// Count returns the number of durations recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Min returns the smallest duration recorded, 0 when empty.
func (h *Histogram) Min() time.Duration { return time.Duration(h.min) }

// Max returns the largest duration recorded, 0 when empty.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean returns the mean duration, 0 when empty.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(math.Round(h.sum / float64(h.n)))
}

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100): the
// smallest recorded duration that at least p% of the recorded ones do not
// exceed, to the histogram's precision. It reports the middle of the
// bucket holding that rank, kept within [Min, Max]; 0 when empty.
func (h *Histogram) Percentile(p float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(p / 100 * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketRange(i)
			v := lo + (hi-lo)/2
			return time.Duration(min(max(v, h.min), h.max))
		}
	}
	return time.Duration(h.max)
}

// CDF returns the distribution as points (d, f): a fraction f of the
// recorded durations are at most d, one point per non-empty bucket, d the
// bucket's top (kept within [Min, Max]), f increasing to 1.
func (h *Histogram) CDF() (ds []time.Duration, fs []float64) {
	var seen uint64
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		seen += c
		_, hi := bucketRange(i)
		ds = append(ds, time.Duration(min(max(hi, h.min), h.max)))
		fs = append(fs, float64(seen)/float64(h.n))
	}
	return ds, fs
}

// histogramJSON is the histogram on the wire between processes and in the
// report: the non-empty buckets as [index, count] pairs.
type histogramJSON struct {
	Buckets [][2]uint64 `json:"buckets"`
	N       uint64      `json:"n"`
	SumNS   float64     `json:"sum_ns"`
	MinNS   int64       `json:"min_ns"`
	MaxNS   int64       `json:"max_ns"`
}

// MarshalJSON encodes the non-empty buckets only.
func (h *Histogram) MarshalJSON() ([]byte, error) {
	j := histogramJSON{Buckets: [][2]uint64{}, N: h.n, SumNS: h.sum, MinNS: h.min, MaxNS: h.max}
	for i, c := range h.counts {
		if c > 0 {
			j.Buckets = append(j.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return json.Marshal(&j)
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (h *Histogram) UnmarshalJSON(b []byte) error {
	var j histogramJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*h = Histogram{n: j.N, sum: j.SumNS, min: j.MinNS, max: j.MaxNS}
	var total uint64
	for _, b := range j.Buckets {
		if b[0] > 1<<12 {
			return fmt.Errorf("histogram bucket %d out of range", b[0])
		}
		if int(b[0]) >= len(h.counts) {
			h.counts = append(h.counts, make([]uint64, int(b[0])+1-len(h.counts))...)
		}
		h.counts[b[0]] += b[1]
		total += b[1]
	}
	if total != h.n {
		return fmt.Errorf("histogram buckets hold %d values, n says %d", total, h.n)
	}
	return nil
}

// Summary is a latency distribution in a report, in milliseconds.
type Summary struct {
	Count uint64  `json:"count"`
	Min   float64 `json:"min_ms"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
}

// Summarize returns h's summary.
func (h *Histogram) Summarize() Summary {
	return Summary{
		Count: h.n, Min: ms(h.Min()), Mean: ms(h.Mean()),
		P50: ms(h.Percentile(50)), P90: ms(h.Percentile(90)), P99: ms(h.Percentile(99)),
		P999: ms(h.Percentile(99.9)), Max: ms(h.Max()),
	}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
