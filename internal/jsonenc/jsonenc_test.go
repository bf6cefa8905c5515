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

// AppendRaw with a string hook rewrites exactly the string values: the
// result decodes to the input with every string value replaced.
func TestAppendRawRewritesValues(t *testing.T) {
	mark := Strings{Value: func(b []byte, s string) []byte { return AppendString(b, "("+s+")") }}
	in := `{ "a" : "x", "b":[1, "y\n", true, null, {"c":"z\"q"}], "d\u0041":-1.5e3, "e":{} }`
	got, err := mark.AppendRaw(nil, []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"a":"(x)","b":[1,"(y\n)",true,null,{"c":"(z\"q)"}],"d\u0041":-1.5e3,"e":{}}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if _, err := mark.AppendRaw(nil, []byte(`{"a":`)); err == nil {
		t.Fatal("invalid JSON accepted")
	}
}

func FuzzAppendRaw(f *testing.F) {
	for _, s := range []string{`{"a":"b"}`, `["x",1,{"k":["v"]}]`, `"s"`, `1`, `null`, `{"a\"b":"c\\d"}`} {
		f.Add(s)
	}
	mark := Strings{Value: func(b []byte, s string) []byte { return AppendString(b, "#"+s) }}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := mark.AppendRaw(nil, []byte(in))
		if !json.Valid([]byte(in)) {
			if err == nil {
				t.Fatal("invalid JSON accepted")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		a, _ := decodeNumbers([]byte(in))
		b, ok := decodeNumbers(got)
		if !ok {
			t.Fatalf("output not JSON: %s", got)
		}
		if want, _ := json.Marshal(markAll(a)); !bytes.Equal(want, mustMarshal(b)) {
			t.Fatalf("in %s: got %s", in, got)
		}
	})
}

func markAll(v any) any {
	switch t := v.(type) {
	case string:
		return "#" + t
	case []any:
		for i := range t {
			t[i] = markAll(t[i])
		}
	case map[string]any:
		for k := range t {
			t[k] = markAll(t[k])
		}
	}
	return v
}

func mustMarshal(v any) []byte { b, _ := json.Marshal(v); return b }

func decodeNumbers(raw []byte) (any, bool) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err == nil
}
