package bench

import "testing"

func TestSequence(t *testing.T) {
	tests := []struct {
		name                 string
		got                  []uint64
		published            uint64
		lost, dups, reorders uint64
	}{
		{"in order", []uint64{1, 2, 3, 4}, 4, 0, 0, 0},
		{"nothing", nil, 3, 3, 0, 0},
		{"tail lost", []uint64{1, 2}, 5, 3, 0, 0},
		{"hole", []uint64{1, 2, 4, 5}, 5, 1, 0, 0},
		{"duplicate", []uint64{1, 2, 2, 3}, 3, 0, 1, 0},
		{"duplicate after later", []uint64{1, 2, 3, 2, 1}, 3, 0, 2, 0},
		{"swap", []uint64{1, 3, 2, 4}, 4, 0, 0, 1},
		{"reversed", []uint64{4, 3, 2, 1}, 4, 0, 0, 3},
		{"late then duplicate", []uint64{2, 1, 1}, 2, 0, 1, 1},
		{"beyond a word", []uint64{1, 64, 65, 200, 130}, 200, 195, 0, 1},
		{"numbers past published", []uint64{1, 2, 3}, 2, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Sequence
			for _, n := range tt.got {
				s.Observe(n)
			}
			if got := s.Lost(tt.published); got != tt.lost {
				t.Errorf("Lost = %d, want %d", got, tt.lost)
			}
			if s.Duplicates != tt.dups {
				t.Errorf("Duplicates = %d, want %d", s.Duplicates, tt.dups)
			}
			if s.Reordered != tt.reorders {
				t.Errorf("Reordered = %d, want %d", s.Reordered, tt.reorders)
			}
			if want := uint64(len(tt.got)) - tt.dups; s.Distinct != want {
				t.Errorf("Distinct = %d, want %d", s.Distinct, want)
			}
		})
	}
}
