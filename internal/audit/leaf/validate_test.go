package leaf

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestValidJSON(t *testing.T) {
	for _, s := range []string{
		`{}`, ` {"a":[1,-0,0.5,1e3,-1.5E-7,true,false,null,"x\"\\\/\b\f\n\r\t\u00e9"]} `, `"s"`, `[]`, `[[]]`, `0`,
		`{"a":{}, "b" : [ 1 , 2 ] }`,
		`{"a":1,}`, `{"a"}`, `{"a":}`, `[1,]`, `01`, `1.`, `.5`, `1e`, `-`, `+1`, `tru`, `nul`, `"\x"`, `"\u12g4"`,
		"\"a\x01\"", `{"a":1}}`, `{"a":1} 2`, `"unterminated`, ``, ` `, `{1:2}`, `[1 2]`, `{"a" 1}`,
		strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth),
		strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1),
	} {
		if got, want := validJSON([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("validJSON(%.40q) = %v, json.Valid = %v", s, got, want)
		}
	}
}

// FuzzValidJSON checks validJSON against encoding/json on arbitrary input.
func FuzzValidJSON(f *testing.F) {
	f.Add(readEntry(f))
	f.Add([]byte(`{"a":[1,-0.5e+3,"\u00e9\n"],"b":{"c":null}}`))
	f.Add([]byte(`[01]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid = %v", b, got, want)
		}
	})
}
