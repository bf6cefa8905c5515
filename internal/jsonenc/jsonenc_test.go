package jsonenc

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// The fast encoder must write exactly what encoding/json writes.
func TestAppendValueMatchesEncodingJSON(t *testing.T) {
	values := []any{
		nil, "plain", "quote\" back\\ <tag> & \n\r\t\b\f\x01 \u2028 \u2029 é 日本", "bad utf8 \xff\xfe",
		true, 42, int64(-7), uint64(1 << 63), json.Number("12345678901234567890"), json.RawMessage(`{"a":[1,2]}`),
		[]string{"a", "b"}, []string(nil), map[string]string{"z": "1", "a": "2"},
		map[string]any{"b": map[string]any{"y": []any{1.5, "x", nil, map[string]any{}}}, "a": json.Number("3")},
		[]any{}, map[string]any{}, time.Date(2024, 5, 1, 12, 0, 0, 123, time.UTC), struct{ X int }{1},
	}
	for _, v := range values {
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := AppendValue(nil, v)
		if err != nil {
			t.Fatalf("%#v: %v", v, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%#v:\n got %s\nwant %s", v, got, want)
		}
	}
	if _, err := AppendValue(nil, json.RawMessage(`{bad`)); err == nil {
		t.Error("invalid raw JSON accepted")
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a", "\"\\<>&", "\x00\x1f\x7f", "\xff", "\u2028", "日本"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := AppendString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("%q: got %s want %s", s, got, want)
		}
	})
}
