package leaf

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestFieldsSplit(t *testing.T) {
	line := []byte(`{"type":"request", "auth": {"policies": ["a", "b"], "metadata": {"z": 1}}, "request":{"path":"x\u0026y"},"error":"","time":0 }` + "\n")
	got := mustFields(t, line)
	want := []Field{
		{"auth.metadata", []byte(`{"z": 1}`)},
		{"auth.policies", []byte(`["a", "b"]`)},
		{"error", []byte(`""`)},
		{"request.path", []byte(`"x\u0026y"`)},
		{"time", []byte(`0`)},
		{"type", []byte(`"request"`)},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d fields %q, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i].Name != want[i].Name || string(got[i].Value) != string(want[i].Value) {
			t.Errorf("field %d = %s=%s, want %s=%s", i, got[i].Name, got[i].Value, want[i].Name, want[i].Value)
		}
	}
}

func TestFieldsKeys(t *testing.T) {
	for _, tc := range []struct {
		line, name string
	}{
		{`{"a\"b":1}`, `a"b`},
		{`{"\u00e9t\u00E9":1}`, "été"},
		{`{"x":{"\ud83d\ude00":1}}`, "x.😀"},
		{`{"\/\b\f\n\r\t\\":1}`, "/\b\f\n\r\t\\"},
		{`{"é":{}, "o":{"k":2}}`, "o.k"},
	} {
		f, err := Fields([]byte(tc.line))
		if err != nil {
			t.Errorf("Fields(%s): %v", tc.line, err)
			continue
		}
		if len(f) != 1 || f[0].Name != tc.name {
			t.Errorf("Fields(%s) = %q, want one field named %q", tc.line, f, tc.name)
		}
	}
}

func TestFieldsErrors(t *testing.T) {
	long := strings.Repeat("k", 256)
	for _, tc := range []struct{ line, msg string }{
		{`[1,2]`, "not a JSON object"},
		{`"x"`, "not a JSON object"},
		{`{"a":1} {"b":2}`, "not a single valid JSON value"},
		{`{"a":1}x`, "not a single valid JSON value"},
		{`{"a":1,}`, "not a single valid JSON value"},
		{"{\"a\":\"\xff\"}", "not valid UTF-8"},
		{`{"a":1,"a":2}`, `duplicate top-level key "a"`},
		{`{"a":{"x":1},"a":{"y":2}}`, `duplicate top-level key "a"`},
		{`{"a":{"x":1,"x":2}}`, `two fields named "a.x"`},
		{`{"a.x":1,"a":{"x":2}}`, `two fields named "a.x"`},
		{`{"":1}`, `name "" is 0 bytes`},
		{`{"` + long + `":1}`, "is 256 bytes"},
		{`{"a":{"` + long[:254] + `":1}}`, "is 256 bytes"},
		{`{"\ud800":1}`, "lone surrogate"},
		{`{"\udc00\ud800":1}`, "lone surrogate"},
	} {
		_, err := Fields([]byte(tc.line))
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Fields(%.40s) error = %v, want ErrMalformed containing %q", tc.line, err, tc.msg)
		}
	}
}

func TestFieldsTooMany(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"o":{`)
	for i := range MaxFields + 1 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"`)
		b.WriteString(strings.Repeat("x", i%7+1))
		b.WriteString(itoa(i))
		b.WriteString(`":0`)
	}
	b.WriteString(`}}`)
	_, err := Fields([]byte(b.String()))
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "at most 65535") {
		t.Fatalf("error = %v, want too many fields", err)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func FuzzFields(f *testing.F) {
	f.Add(readEntry(f))
	f.Add([]byte(`{"a":{"b":[1,{"c":"}"}]},"d":"\"{"}`))
	f.Add([]byte(`{"\u00e9":{ "x" : true }}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		fields, err := Fields(line)
		valid := jsonValid(line) && utf8.Valid(line)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			syntax := strings.Contains(err.Error(), "not a single valid JSON value") || strings.Contains(err.Error(), "not valid UTF-8")
			if valid == syntax {
				t.Fatalf("Fields(%q) = %v, but json.Valid = %v", line, err, valid)
			}
			return
		}
		if !valid {
			t.Fatalf("Fields accepted %q, which json.Valid rejects", line)
		}
		for i, fl := range fields {
			if i > 0 && fields[i-1].Name >= fl.Name {
				t.Fatalf("names not sorted/unique: %q then %q", fields[i-1].Name, fl.Name)
			}
			if len(fl.Value) == 0 || !jsonValid(fl.Value) {
				t.Fatalf("field %q value %q is not JSON", fl.Name, fl.Value)
			}
		}
		leaf, err := Commit(fields, testSeed(1))
		if err != nil {
			t.Fatalf("Commit of Fields output: %v", err)
		}
		ds, err := ParseLeaf(leaf)
		if err != nil {
			t.Fatalf("ParseLeaf of Commit output: %v", err)
		}
		if len(ds) != len(fields) {
			t.Fatalf("ParseLeaf: %d fields, want %d", len(ds), len(fields))
		}
	})
}
