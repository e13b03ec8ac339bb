package jetstream

import (
	"testing"
	"time"

	"github.com/longpoll/longpoll"
)

// Golden vectors of the other formats the broker stores: the id index's
// values, and the keys and values of the revocation bucket. A change to
// both sides of one must fail here.
func TestStoredFormatsGolden(t *testing.T) {
	at := time.UnixMicro(1735787045123456).UTC()
	ie := indexEntry{epoch: 42, seq: 7, time: at, costBefore: 300, id: "order 1/é"}
	const wantIndex = "42 7 1735787045123456 300 order 1/é"
	if got := ie.String(); got != wantIndex {
		t.Errorf("index entry %q, want %q", got, wantIndex)
	}
	if got, err := parseIndexEntry(wantIndex); err != nil || got != ie {
		t.Errorf("parseIndexEntry(%q) = %+v, %v; want %+v", wantIndex, got, err, ie)
	}

	r := longpoll.Revocation{Subject: "user:42/é", Before: at, Expires: at.Add(time.Hour)}
	const wantKey, wantValue = "sdXNlcjo0Mi_DqQ", "1735787045123456,1735790645123456"
	if k, v := revocationKey(r.Subject), string(revocationValue(r)); k != wantKey || v != wantValue {
		t.Errorf("revocation stored as %q = %q, want %q = %q", k, v, wantKey, wantValue)
	}
	if got, err := parseRevocation(wantKey, []byte(wantValue)); err != nil || got != r {
		t.Errorf("parseRevocation = %+v, %v; want %+v", got, err, r)
	}
	if k := nodeKey("10.0.0.1:8080"); k != "nMTAuMC4wLjE6ODA4MA" {
		t.Errorf("node key %q", k)
	}
	if s := (&Broker{prefix: "lp"}).idSubject("a.b", "x"); s != "lp.i.a=b.2d711642b726b04401627ca9fbac32f5" {
		t.Errorf("id subject %q", s)
	}
}

// FuzzIndexEntry: what parses prints back the same; nothing panics.
func FuzzIndexEntry(f *testing.F) {
	f.Add("42 7 1735787045123456 300 order 1/é")
	f.Add("1 1 0 0 ")
	f.Add("1 1 x 0 a")
	f.Fuzz(func(t *testing.T, s string) {
		ie, err := parseIndexEntry(s)
		if err != nil {
			return
		}
		again, err := parseIndexEntry(ie.String())
		if err != nil || again != ie {
			t.Fatalf("%q parses to %+v, which prints as %q and parses to %+v, %v", s, ie, ie.String(), again, err)
		}
	})
}

// FuzzRevocation: any subject survives its key; what parses round-trips.
func FuzzRevocation(f *testing.F) {
	f.Add("alice", "1,2")
	f.Add("日本 a/b", "-5,9")
	f.Add("", ",")
	f.Fuzz(func(t *testing.T, subject, value string) {
		key := revocationKey(subject)
		r, err := parseRevocation(key, []byte(value))
		if err != nil {
			return
		}
		if r.Subject != subject {
			t.Fatalf("subject %q comes back as %q", subject, r.Subject)
		}
		again, err := parseRevocation(revocationKey(r.Subject), revocationValue(r))
		if err != nil || again != r {
			t.Fatalf("%+v round-trips to %+v, %v", r, again, err)
		}
	})
}
