package syncproto

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func seqs(evs []Event) string {
	var b strings.Builder
	for i, ev := range evs {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprint(&b, ev.Seq)
	}
	return b.String()
}

func TestFeedRing(t *testing.T) {
	f := NewFeed(4)
	if b := must(f.Subscribe("z", 0, 10)); b.Resync || len(b.Events) != 0 || b.Head != 0 {
		t.Fatalf("empty zone: %+v", b)
	}
	for i := range 6 {
		last, err := f.Publish("z", upsert(fmt.Sprint("p", i), 1))
		if err != nil || last != uint64(i+1) {
			t.Fatalf("publish %d: last %d err %v", i, last, err)
		}
	}
	// The ring holds 3..6.
	tests := []struct {
		from, max  int
		want       string
		resync     bool
		resyncFrom uint64
	}{
		{from: 6, max: 10, want: ""},
		{from: 2, max: 10, want: "3,4,5,6"},
		{from: 4, max: 10, want: "5,6"},
		{from: 3, max: 1, want: "4"},
		{from: 1, max: 10, want: "3,4,5,6", resync: true, resyncFrom: 2},
		{from: 0, max: 2, want: "3,4", resync: true, resyncFrom: 2},
		{from: 7, max: 10, want: "3,4,5,6", resync: true, resyncFrom: 2},
	}
	for _, tt := range tests {
		b := must(f.Subscribe("z", uint64(tt.from), tt.max))
		if got := seqs(b.Events); got != tt.want || b.Resync != tt.resync || b.Head != 6 {
			t.Errorf("from %d max %d: got %q resync %v head %d, want %q resync %v", tt.from, tt.max, got, b.Resync, b.Head, tt.want, tt.resync)
		}
		if tt.resync && b.From != tt.resyncFrom {
			t.Errorf("from %d: resync From %d, want %d", tt.from, b.From, tt.resyncFrom)
		}
	}
	if b := must(f.Subscribe("z", 2, 1)); b.Events[0].Path != "p2" || b.Events[0].Zone != "z" || string(b.Events[0].Data) != `{"password":"s3cret"}` {
		t.Fatalf("event 3 came back as %+v", b.Events[0])
	}
	if b := must(f.Subscribe("other", 0, 10)); len(b.Events) != 0 || b.Resync {
		t.Fatalf("zones are not separate: %+v", b)
	}
}

func TestFeedWake(t *testing.T) {
	f := NewFeed(0)
	b := must(f.Subscribe("z", 0, 10))
	select {
	case <-b.Wait:
		t.Fatal("Wait closed before any publish")
	default:
	}
	if _, err := f.Publish("other", upsert("p", 1)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.Wait:
		t.Fatal("a publish to another zone woke z")
	case <-time.After(10 * time.Millisecond):
	}
	if _, err := f.Publish("z", upsert("p", 1)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.Wait:
	case <-time.After(time.Second):
		t.Fatal("Wait not closed by a publish")
	}
}

func TestFeedPublishIsAllOrNothing(t *testing.T) {
	f := NewFeed(0)
	big := upsert("big", 1)
	big.Data = []byte(`"` + strings.Repeat("x", DefaultMaxFrame) + `"`)
	tests := []struct {
		name string
		evs  []Event
		want error
	}{
		{"heartbeat", []Event{upsert("a", 1), {Kind: Heartbeat}}, ErrInvalidEvent},
		{"resync", []Event{{Kind: Resync}}, ErrInvalidEvent},
		{"no kind", []Event{{Path: "a"}}, ErrInvalidEvent},
		{"upsert without path", []Event{upsert("a", 1), {Kind: Upsert}}, ErrInvalidEvent},
		{"delete-version without version", []Event{{Kind: DeleteVersion, Path: "a"}}, ErrInvalidEvent},
		{"oversized", []Event{upsert("a", 1), big}, ErrFrameTooLarge},
	}
	for _, tt := range tests {
		_, err := f.Publish("z", tt.evs...)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: err %v, want %v", tt.name, err, tt.want)
		}
		if h := f.Head("z"); h != 0 {
			t.Fatalf("%s: a failed publish moved head to %d", tt.name, h)
		}
	}
}

func TestFeedSetHead(t *testing.T) {
	f := NewFeed(0)
	if err := f.SetHead("z", 100); err != nil {
		t.Fatal(err)
	}
	if b := must(f.Subscribe("z", 50, 10)); !b.Resync || b.From != 100 {
		t.Fatalf("ack before the restart point: %+v, want Resync from 100", b)
	}
	last, err := f.Publish("z", upsert("a", 1))
	if err != nil || last != 101 {
		t.Fatalf("publish after SetHead: %d %v", last, err)
	}
	if b := must(f.Subscribe("z", 100, 10)); b.Resync || seqs(b.Events) != "101" {
		t.Fatalf("from 100: %+v", b)
	}
	if err := f.SetHead("z", 200); !errors.Is(err, ErrInvalidEvent) {
		t.Fatalf("SetHead on a zone with events: %v", err)
	}
}

func TestKindRevokes(t *testing.T) {
	want := map[Kind]bool{Upsert: false, Delete: true, DeleteVersion: true, Lease: false, Revoke: true, Reattest: false, Resync: true, Heartbeat: false}
	for k := Upsert; k <= Heartbeat; k++ {
		if k.Revokes() != want[k] {
			t.Errorf("%s.Revokes() = %v", k, k.Revokes())
		}
		var back Kind
		txt, err := k.MarshalText()
		if err != nil || back.UnmarshalText(txt) != nil || back != k {
			t.Errorf("%s does not round-trip: %q %v", k, txt, err)
		}
	}
	if _, err := Kind(0).MarshalText(); !errors.Is(err, ErrMalformed) {
		t.Errorf("Kind(0) marshalled: %v", err)
	}
}
