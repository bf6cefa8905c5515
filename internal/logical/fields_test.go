package logical

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestFieldReaders(t *testing.T) {
	data := map[string]any{
		"s": "x", "n": json.Number("42"), "ns": "7", "f": json.Number("1.5"), "b": true, "bs": "false",
		"d": "90s", "ds": json.Number("30"), "neg": "-5s", "list": []any{"a", " b ", ""}, "csv": "a, b,,c",
		"badlist": []any{"a", 1}, "m": map[string]any{"k": "v"}, "badm": map[string]any{"k": 1}, "obj": []any{},
	}
	if v, ok, err := String(data, "s"); v != "x" || !ok || err != nil {
		t.Errorf("String = %q %v %v", v, ok, err)
	}
	if _, ok, err := String(data, "missing"); ok || err != nil {
		t.Errorf("missing String: %v %v", ok, err)
	}
	for name, want := range map[string]int64{"n": 42, "ns": 7} {
		if v, _, err := Int(data, name); v != want || err != nil {
			t.Errorf("Int(%s) = %d %v", name, v, err)
		}
	}
	for name, want := range map[string]bool{"b": true, "bs": false} {
		if v, _, err := Bool(data, name); v != want || err != nil {
			t.Errorf("Bool(%s) = %v %v", name, v, err)
		}
	}
	for name, want := range map[string]time.Duration{"d": 90 * time.Second, "ds": 30 * time.Second} {
		if v, _, err := Duration(data, name); v != want || err != nil {
			t.Errorf("Duration(%s) = %v %v", name, v, err)
		}
	}
	if v, _, err := Strings(data, "list"); err != nil || strings.Join(v, ",") != "a,b" {
		t.Errorf("Strings(list) = %q %v", v, err)
	}
	if v, _, err := Strings(data, "csv"); err != nil || strings.Join(v, ",") != "a,b,c" {
		t.Errorf("Strings(csv) = %q %v", v, err)
	}
	if v, _, err := StringMap(data, "m"); err != nil || v["k"] != "v" {
		t.Errorf("StringMap = %v %v", v, err)
	}
	// Every bad value is an ErrInvalidRequest that names its field.
	bad := []struct {
		name string
		read func() error
	}{
		{"s", func() error { _, _, err := Int(data, "s"); return err }},
		{"f", func() error { _, _, err := Int(data, "f"); return err }},
		{"s", func() error { _, _, err := Bool(data, "s"); return err }},
		{"neg", func() error { _, _, err := Duration(data, "neg"); return err }},
		{"s", func() error { _, _, err := Duration(data, "s"); return err }},
		{"badlist", func() error { _, _, err := Strings(data, "badlist"); return err }},
		{"n", func() error { _, _, err := Strings(data, "n"); return err }},
		{"badm", func() error { _, _, err := StringMap(data, "badm"); return err }},
		{"obj", func() error { _, _, err := Object(data, "obj"); return err }},
		{"list", func() error { _, _, err := String(data, "list"); return err }},
	}
	for _, b := range bad {
		err := b.read()
		if !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), `"`+b.name+`"`) {
			t.Errorf("field %s: err = %v", b.name, err)
		}
	}
}

func TestCheckFields(t *testing.T) {
	if err := CheckFields(map[string]any{"a": 1, "b": 2}, "a", "b", "c"); err != nil {
		t.Fatal(err)
	}
	err := CheckFields(map[string]any{"a": 1, "zz": 2, "yy": 3}, "a")
	if !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), `"yy"`) {
		t.Fatalf("err = %v, want the first unknown field in order", err)
	}
}
