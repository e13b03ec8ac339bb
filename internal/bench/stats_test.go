package bench

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketsCoverEveryValueOnce(t *testing.T) {
	prevHi := int64(-1)
	for i := range 3000 {
		lo, hi := bucketRange(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, want %d", i, lo, prevHi+1)
		}
		if hi < lo {
			t.Fatalf("bucket %d is [%d, %d]", i, lo, hi)
		}
		if lo >= subCount && float64(hi-lo+1) > float64(lo)/half {
			t.Fatalf("bucket %d [%d, %d] is wider than 1/%d of its start", i, lo, hi, half)
		}
		for _, v := range []int64{lo, hi, lo + (hi-lo)/2} {
			if got := bucketOf(v); got != i {
				t.Fatalf("bucketOf(%d) = %d, want %d", v, got, i)
			}
		}
		prevHi = hi
	}
	if got := bucketOf(math.MaxInt64); got > 1<<12 {
		t.Fatalf("bucketOf(MaxInt64) = %d, beyond what UnmarshalJSON accepts", got)
	}
}

// exactPercentile is the nearest-rank percentile of sorted values.
func exactPercentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func TestPercentiles(t *testing.T) {
	tests := []struct {
		name   string
		values func(r *rand.Rand) []time.Duration
	}{
		{"one value", func(*rand.Rand) []time.Duration { return []time.Duration{42 * time.Millisecond} }},
		{"small exact values", func(*rand.Rand) []time.Duration {
			var v []time.Duration
			for i := 1; i <= 100; i++ {
				v = append(v, time.Duration(i))
			}
			return v
		}},
		{"uniform 1-200 ms", func(r *rand.Rand) []time.Duration {
			v := make([]time.Duration, 10000)
			for i := range v {
				v[i] = time.Millisecond + time.Duration(r.Int64N(int64(199*time.Millisecond)))
			}
			return v
		}},
		{"long tail", func(r *rand.Rand) []time.Duration {
			v := make([]time.Duration, 5000)
			for i := range v {
				v[i] = time.Duration(math.Exp(r.NormFloat64()*2) * float64(time.Millisecond))
			}
			return v
		}},
		{"zero and negative", func(*rand.Rand) []time.Duration { return []time.Duration{-5, 0, 0, 3} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vals := tt.values(rand.New(rand.NewPCG(1, 2)))
			var h Histogram
			var sum float64
			for _, v := range vals {
				h.Record(v)
			}
			sorted := make([]time.Duration, len(vals))
			for i, v := range vals {
				sorted[i] = max(v, 0)
				sum += float64(sorted[i])
			}
			slices.Sort(sorted)
			if h.Count() != uint64(len(vals)) {
				t.Errorf("Count = %d, want %d", h.Count(), len(vals))
			}
			if h.Min() != sorted[0] || h.Max() != sorted[len(sorted)-1] {
				t.Errorf("Min, Max = %v, %v, want %v, %v", h.Min(), h.Max(), sorted[0], sorted[len(sorted)-1])
			}
			if want := time.Duration(math.Round(sum / float64(len(vals)))); h.Mean() != want {
				t.Errorf("Mean = %v, want %v", h.Mean(), want)
			}
			for _, p := range []float64{0.1, 1, 10, 50, 90, 99, 99.9, 100} {
				got, want := h.Percentile(p), exactPercentile(sorted, p)
				if tol := float64(want) / half; math.Abs(float64(got-want)) > tol {
					t.Errorf("p%g = %v, want %v within %v", p, got, want, time.Duration(tol))
				}
			}
		})
	}
}

func TestEmptyHistogram(t *testing.T) {
	var h Histogram
	if h.Percentile(50) != 0 || h.Mean() != 0 || h.Max() != 0 || h.Count() != 0 {
		t.Fatal("an empty histogram reports values")
	}
	if ds, fs := h.CDF(); len(ds) != 0 || len(fs) != 0 {
		t.Fatal("an empty histogram has a CDF")
	}
	if s := h.Summarize(); s != (Summary{}) {
		t.Fatalf("Summarize() = %+v", s)
	}
}

func TestMergeAndJSONRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var all, a, b Histogram
	for i := range 2000 {
		d := time.Duration(r.Int64N(int64(time.Second)))
		all.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	// Each half travels as JSON, as from a worker process.
	var merged Histogram
	for _, h := range []*Histogram{&a, &b} {
		raw, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		var back Histogram
		if err := json.Unmarshal(raw, &back); err != nil {
			t.Fatal(err)
		}
		merged.Merge(&back)
	}
	if merged.Summarize() != all.Summarize() {
		t.Fatalf("merged %+v, want %+v", merged.Summarize(), all.Summarize())
	}
	ds1, fs1 := merged.CDF()
	ds2, fs2 := all.CDF()
	if !slices.Equal(ds1, ds2) || !slices.Equal(fs1, fs2) {
		t.Fatal("merged CDF differs")
	}
	if fs1[len(fs1)-1] != 1 || !slices.IsSorted(fs1) || !slices.IsSorted(ds1) {
		t.Fatal("CDF does not climb to 1")
	}
}

func TestUnmarshalRejectsInconsistentHistogram(t *testing.T) {
	for _, raw := range []string{
		`{"buckets":[[3,2]],"n":3}`,
		`{"buckets":[[99999,1]],"n":1}`,
		`{"buckets":"x"}`,
	} {
		var h Histogram
		if err := json.Unmarshal([]byte(raw), &h); err == nil {
			t.Errorf("%s: no error", raw)
		}
	}
}
