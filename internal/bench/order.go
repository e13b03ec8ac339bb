package bench

// Sequence checks the numbers one subscriber receives on one topic, where
// the publisher numbered the messages 1, 2, 3, ... in publishing order.
// The zero Sequence is ready to use.
type Sequence struct {
	seen []uint64 // bit n set: number n was received
	top  uint64   // largest number received
	// Distinct counts the numbers received at least once.
	Distinct uint64
	// Duplicates counts receipts of a number already received.
	Duplicates uint64
	// Reordered counts first receipts of a number smaller than one
	// received before it.
	Reordered uint64
}

// maxNumber bounds the numbers a Sequence tracks (a 16 MiB bitset at
// worst); larger ones are counted as received, never as duplicates.
const maxNumber = 1 << 27

// Observe records the receipt of number n.
func (s *Sequence) Observe(n uint64) {
	if n < maxNumber {
		w, bit := n/64, uint64(1)<<(n%64)
		if int(w) >= len(s.seen) {
			grow := max(int(w)+1, 2*len(s.seen))
			s.seen = append(s.seen, make([]uint64, grow-len(s.seen))...)
		}
		if s.seen[w]&bit != 0 {
			s.Duplicates++
			return
		}
		s.seen[w] |= bit
	}
	s.Distinct++
	if n < s.top {
		s.Reordered++
	} else {
		s.top = n
	}
}

// Lost returns how many of the numbers 1..published were never received.
func (s *Sequence) Lost(published uint64) uint64 {
	var got uint64
	for n := uint64(1); n <= published && n < maxNumber; n++ {
		if w := n / 64; int(w) < len(s.seen) && s.seen[w]&(1<<(n%64)) != 0 {
			got++
		}
	}
	if published >= maxNumber {
		got += published - maxNumber + 1 // not tracked: assume received
	}
	return published - got
}
