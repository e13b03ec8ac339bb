package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/bits"
)

// A check of a bbolt file's pages made by reading the file with plain,
// bounds-checked Go: no memory map, no unsafe pointer, no goroutine.
//
// bbolt walks every page of a file it opens for writing (to rebuild its
// free list, see NoFreelistSync) and of a file it checks (Tx.Check), on a
// goroutine of its own, through unchecked pointers into the memory map: a
// damaged page there is a panic or a memory fault that kills the process.
// So Open first walks the file here, and lets bbolt near it only when
// this walk found everything bbolt's would check: pages within the high
// water mark, each referenced once, of the right type, elements and keys
// within their page, keys in order within each page and within the
// bounds their parents give (bbolt's recursivelyCheckPageKeyOrder), and
// bucket values that hold a bucket header.
//
// The layout, from bbolt's internal/common (native byte order): a page
// starts with a 16-byte header (id uint64, flags uint16, count uint16,
// overflow uint32); a branch element is pos uint32, ksize uint32, pgid
// uint64; a leaf element is flags uint32, pos uint32, ksize uint32, vsize
// uint32, pos counting from the element itself; a bucket value starts with
// its root pgid and sequence (uint64 each), and a root of 0 means the
// bucket's own leaf page follows inline. The meta page holds, after the
// header, magic, version, pageSize, flags (uint32 each), the root bucket
// (16 bytes), freelist, pgid (the high water mark), txid and an FNV-64a
// checksum of the 56 bytes before it.

const (
	bbMagic          = 0xED0CDAED
	bbVersion        = 2
	pageHeaderSize   = 16
	elementSize      = 16
	bucketHeaderSize = 16
	metaSize         = 64

	flagBranch   = 0x01
	flagLeaf     = 0x02
	flagMeta     = 0x04
	flagFreelist = 0x10
	leafBucket   = 0x01

	noFreelist = ^uint64(0)

	// maxKeySize is bbolt's bound on a key.
	maxKeySize = 32768
)

var native = binary.NativeEndian

// layout is what the meta page bbolt would use says of a file.
type layout struct {
	pageSize uint64
	root     uint64 // the root bucket's page
	freelist uint64 // noFreelist when the free list is not stored
	hwm      uint64 // pages in use: ids 0..hwm-1
}

type metaPage struct {
	layout
	txid uint64
}

// parseMeta reads a meta page (header included) as bbolt validates it.
func parseMeta(p []byte) (metaPage, error) {
	if len(p) < pageHeaderSize+metaSize {
		return metaPage{}, errors.New("short meta page")
	}
	m := p[pageHeaderSize : pageHeaderSize+metaSize]
	switch {
	case native.Uint32(m[0:]) != bbMagic:
		return metaPage{}, errors.New("not a bbolt meta page")
	case native.Uint32(m[4:]) != bbVersion:
		return metaPage{}, fmt.Errorf("bbolt format version %d", native.Uint32(m[4:]))
	}
	h := fnv.New64a()
	h.Write(m[:56])
	if h.Sum64() != native.Uint64(m[56:]) {
		return metaPage{}, errors.New("meta page checksum mismatch")
	}
	return metaPage{
		layout: layout{
			pageSize: uint64(native.Uint32(m[8:])),
			root:     native.Uint64(m[16:]),
			freelist: native.Uint64(m[32:]),
			hwm:      native.Uint64(m[40:]),
		},
		txid: native.Uint64(m[48:]),
	}, nil
}

// readLayout finds the meta page bbolt would use and checks that the file
// holds every page it counts: a shorter file was truncated. As bbolt does,
// it takes the page size from the first meta page, or else from a second
// one found at one of the page sizes bbolt tries, then uses the valid one
// of the two meta pages with the higher txid.
func readLayout(f io.ReaderAt, size int64) (layout, error) {
	read := func(off int64) []byte {
		buf := make([]byte, pageHeaderSize+metaSize)
		n, _ := f.ReadAt(buf, off)
		return buf[:n]
	}
	m0, err0 := parseMeta(read(0))
	ps := m0.pageSize
	for i := 0; err0 != nil && i <= 14; i++ {
		off := int64(1024) << i
		if off >= size-1024 {
			break
		}
		if m, err := parseMeta(read(off)); err == nil {
			ps = m.pageSize
			break
		}
	}
	switch {
	case ps == 0 && size < 2048:
		return layout{}, fmt.Errorf("it is %d bytes, too short for a store", size)
	case ps == 0:
		return layout{}, fmt.Errorf("no valid meta page (%v)", err0)
	case ps < 1024 || ps > 1<<24 || ps&(ps-1) != 0:
		return layout{}, fmt.Errorf("page size %d", ps)
	}
	m1, err1 := parseMeta(read(int64(ps)))
	a, b, errA, errB := m0, m1, err0, err1
	if m1.txid > m0.txid {
		a, b, errA, errB = m1, m0, err1, err0
	}
	var l layout
	switch {
	case errA == nil:
		l = a.layout
	case errB == nil:
		l = b.layout
	default:
		return layout{}, fmt.Errorf("no valid meta page (%v; %v)", err0, err1)
	}
	l.pageSize = ps // what bbolt addresses pages with
	switch {
	case l.hwm < 3 || l.hwm > 1<<48:
		return layout{}, fmt.Errorf("its meta page counts %d pages", l.hwm)
	case l.hwm > uint64(size)/ps:
		return layout{}, fmt.Errorf("it is truncated: %d bytes, and its pages reach %d", size, l.hwm*ps)
	}
	return l, nil
}

// verifier walks a file's pages; see the comment at the top of the file.
type verifier struct {
	f     io.ReaderAt
	l     layout
	ps    int
	seen  []uint64 // a bit per page reached
	freed []uint64 // a bit per page in the stored free list

	// mem, when not nil, is the whole file, read or mapped: f is not
	// used then.
	mem []byte
}

// verifyBytes is verifyPages of a file held in memory (or mapped).
func verifyBytes(data []byte, l layout) error {
	return verifyPages(bytesReader(data), l)
}

// bytesReader is an io.ReaderAt that the verifier reads without copying.
type bytesReader []byte

func (b bytesReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// verifyPages walks every page reachable from l's root bucket, and the
// stored free list if there is one.
func verifyPages(f io.ReaderAt, l layout) error {
	words := (l.hwm + 63) / 64
	v := &verifier{f: f, l: l, ps: int(l.pageSize), seen: make([]uint64, words), freed: make([]uint64, words)}
	if b, ok := f.(bytesReader); ok {
		v.mem = b
	}
	for id := range uint64(2) {
		// bbolt's check reads both meta pages as pages, asserting their
		// headers (Page.FastCheck), whichever one it uses.
		h, err := v.read(int64(id)*int64(v.ps), pageHeaderSize)
		if err != nil {
			return fmt.Errorf("meta page %d: %w", id, err)
		}
		if native.Uint64(h) != id || native.Uint16(h[8:]) != flagMeta {
			return fmt.Errorf("meta page %d has a damaged header", id)
		}
		v.set(v.seen, id)
	}
	if l.freelist != noFreelist {
		if err := v.freelist(l.freelist); err != nil {
			return err
		}
	}
	if l.root == 0 {
		return errors.New("no root bucket page")
	}
	if _, err := v.tree(l.root, nil, nil, 0); err != nil {
		return err
	}
	for i, w := range v.freed {
		if c := w & v.seen[i]; c != 0 {
			return fmt.Errorf("page %d is both in use and free", uint64(i)*64+uint64(bits.TrailingZeros64(c)))
		}
	}
	return nil
}

func (v *verifier) set(bits []uint64, id uint64) bool {
	w, m := id/64, uint64(1)<<(id%64)
	was := bits[w]&m != 0
	bits[w] |= m
	return was
}

// span is a page and its overflow pages in the file, or an inline
// bucket's page in a value.
type span struct {
	v     *verifier
	id    uint64
	off   int64  // in the file; -1 for an inline page
	first []byte // the bytes read already: all of an inline page
	n     int    // its length in bytes
	flags uint16
	count int
}

// bytes returns n bytes of the span at o, or an error if they are not
// all in it.
func (s *span) bytes(o, n int) ([]byte, error) {
	if o < 0 || n < 0 || o > s.n || n > s.n-o {
		return nil, fmt.Errorf("page %d: an element points outside the page", s.id)
	}
	if o+n <= len(s.first) {
		return s.first[o : o+n], nil
	}
	b, err := s.v.read(s.off+int64(o), n)
	if err != nil {
		return nil, fmt.Errorf("page %d: %w", s.id, err)
	}
	return b, nil
}

// page reads page id's header and first page, marking it and its overflow
// pages reached.
func (v *verifier) page(id uint64) (*span, error) {
	if id < 2 || id >= v.l.hwm {
		return nil, fmt.Errorf("page %d is out of bounds (%d pages)", id, v.l.hwm)
	}
	off := int64(id) * int64(v.ps)
	first, err := v.read(off, v.ps)
	if err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	if got := native.Uint64(first); got != id {
		return nil, fmt.Errorf("page %d says it is page %d", id, got)
	}
	overflow := uint64(native.Uint32(first[12:]))
	if overflow >= v.l.hwm-id {
		return nil, fmt.Errorf("page %d: %d overflow pages pass the end (%d pages)", id, overflow, v.l.hwm)
	}
	for i := id; i <= id+overflow; i++ {
		if v.set(v.seen, i) {
			return nil, fmt.Errorf("page %d is referenced twice", i)
		}
	}
	return &span{
		v: v, id: id, off: off, first: first,
		n:     int(overflow+1) * v.ps,
		flags: native.Uint16(first[8:]),
		count: int(native.Uint16(first[10:])),
	}, nil
}

// read returns the n bytes of the file at off.
func (v *verifier) read(off int64, n int) ([]byte, error) {
	if v.mem != nil {
		if off < 0 || off > int64(len(v.mem)) || int64(n) > int64(len(v.mem))-off {
			return nil, io.ErrUnexpectedEOF
		}
		return v.mem[off : off+int64(n) : off+int64(n)], nil
	}
	b := make([]byte, n)
	_, err := v.f.ReadAt(b, off)
	return b, err
}

// tree checks the B+tree under page id, whose keys must be >= lo and
// < hi (nil: no bound), and returns its last key.
func (v *verifier) tree(id uint64, lo, hi []byte, depth int) ([]byte, error) {
	if depth > 64 {
		return nil, fmt.Errorf("page %d: the tree is too deep", id)
	}
	s, err := v.page(id)
	if err != nil {
		return nil, err
	}
	switch s.flags {
	case flagBranch:
		return v.branch(s, lo, hi, depth)
	case flagLeaf:
		return v.leaf(s, lo, hi, depth)
	}
	return nil, fmt.Errorf("page %d: type %#x where a branch or leaf page belongs", id, s.flags)
}

func (v *verifier) branch(s *span, lo, hi []byte, depth int) ([]byte, error) {
	if s.count == 0 {
		return nil, fmt.Errorf("page %d: an empty branch page", s.id)
	}
	elems, err := s.bytes(pageHeaderSize, s.count*elementSize)
	if err != nil {
		return nil, err
	}
	keys := make([][]byte, s.count)
	kids := make([]uint64, s.count)
	for i := range keys {
		e := elems[i*elementSize:]
		pos, ksize := int(native.Uint32(e[0:])), int(native.Uint32(e[4:]))
		if ksize > maxKeySize {
			return nil, fmt.Errorf("page %d: key %d is %d bytes", s.id, i, ksize)
		}
		if keys[i], err = s.bytes(pageHeaderSize+i*elementSize+pos, ksize); err != nil {
			return nil, err
		}
		kids[i] = native.Uint64(e[8:])
	}
	var last []byte
	min := lo
	for i, k := range keys {
		if err := keyInOrder(s.id, i, k, min, hi); err != nil {
			return nil, err
		}
		next := hi
		if i+1 < len(keys) {
			next = keys[i+1]
		}
		if last, err = v.tree(kids[i], k, next, depth+1); err != nil {
			return nil, err
		}
		if last != nil {
			min = last
		} else {
			min = k
		}
	}
	return last, nil
}

func (v *verifier) leaf(s *span, lo, hi []byte, depth int) ([]byte, error) {
	inline := s.off < 0
	elems, err := s.bytes(pageHeaderSize, s.count*elementSize)
	if err != nil {
		return nil, err
	}
	var prev []byte
	for i := range s.count {
		e := elems[i*elementSize:]
		flags := native.Uint32(e[0:])
		pos, ksize, vsize := int(native.Uint32(e[4:])), int(native.Uint32(e[8:])), int(native.Uint32(e[12:]))
		if flags&^leafBucket != 0 {
			return nil, fmt.Errorf("page %d: element %d has flags %#x", s.id, i, flags)
		}
		if ksize > maxKeySize {
			return nil, fmt.Errorf("page %d: key %d is %d bytes", s.id, i, ksize)
		}
		at := pageHeaderSize + i*elementSize + pos
		k, err := s.bytes(at, ksize)
		if err != nil {
			return nil, err
		}
		min := lo
		if i > 0 {
			min = prev
		}
		if err := keyInOrder(s.id, i, k, min, hi); err != nil {
			return nil, err
		}
		prev = k
		if at+ksize > s.n || vsize > s.n-at-ksize {
			return nil, fmt.Errorf("page %d: value %d passes the end of the page", s.id, i)
		}
		if flags&leafBucket == 0 {
			continue // a value's bytes are the store's to check
		}
		if inline {
			// bbolt inlines only buckets without buckets in them.
			return nil, fmt.Errorf("page %d: a bucket inside an inline bucket", s.id)
		}
		if vsize < bucketHeaderSize {
			return nil, fmt.Errorf("page %d: bucket value %d is %d bytes", s.id, i, vsize)
		}
		val, err := s.bytes(at+ksize, vsize)
		if err != nil {
			return nil, err
		}
		if err := v.bucket(s.id, val, depth); err != nil {
			return nil, err
		}
	}
	return prev, nil
}

// bucket checks a bucket value found on page id.
func (v *verifier) bucket(id uint64, val []byte, depth int) error {
	root := native.Uint64(val)
	if root != 0 {
		_, err := v.tree(root, nil, nil, depth+1)
		return err
	}
	inline := val[bucketHeaderSize:]
	if len(inline) < pageHeaderSize {
		return fmt.Errorf("page %d: an inline bucket of %d bytes", id, len(inline))
	}
	s := &span{v: v, id: id, off: -1, first: inline, n: len(inline),
		flags: native.Uint16(inline[8:]), count: int(native.Uint16(inline[10:]))}
	if s.flags != flagLeaf {
		return fmt.Errorf("page %d: an inline bucket's page has type %#x", id, s.flags)
	}
	if depth > 64 {
		return fmt.Errorf("page %d: buckets nested too deep", id)
	}
	_, err := v.leaf(s, nil, nil, depth+1)
	return err
}

// freelist checks the stored free list and notes its pages.
func (v *verifier) freelist(id uint64) error {
	s, err := v.page(id)
	if err != nil {
		return fmt.Errorf("free list: %w", err)
	}
	if s.flags != flagFreelist {
		return fmt.Errorf("free list page %d has type %#x", id, s.flags)
	}
	n, start := s.count, pageHeaderSize
	if n == 0xFFFF {
		b, err := s.bytes(start, 8)
		if err != nil {
			return err
		}
		c := native.Uint64(b)
		if c > v.l.hwm {
			return fmt.Errorf("free list page %d counts %d pages", id, c)
		}
		n, start = int(c), start+8
	}
	ids, err := s.bytes(start, n*8)
	if err != nil {
		return err
	}
	for i := range n {
		f := native.Uint64(ids[i*8:])
		if f < 2 || f >= v.l.hwm {
			return fmt.Errorf("free list holds page %d, out of bounds", f)
		}
		if v.set(v.freed, f) {
			return fmt.Errorf("free list holds page %d twice", f)
		}
	}
	return nil
}

// keyInOrder checks key i of page id against the previous key (or the
// parent's lower bound) and the parent's upper bound, as bbolt does.
func keyInOrder(id uint64, i int, k, prev, hi []byte) error {
	if prev != nil {
		c := bytes.Compare(prev, k)
		if c > 0 || (i > 0 && c == 0) {
			return fmt.Errorf("page %d: key %d (%x) is out of order after %x", id, i, k, prev)
		}
	}
	if hi != nil && bytes.Compare(k, hi) >= 0 {
		return fmt.Errorf("page %d: key %d (%x) is out of order: not below its parent's next key %x", id, i, k, hi)
	}
	return nil
}
