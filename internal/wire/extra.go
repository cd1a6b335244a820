package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"unicode"
)

// fieldNamesCache maps a struct type to the set of JSON member names its
// fields claim, so that Extra never duplicates a modelled field.
var fieldNamesCache sync.Map // reflect.Type -> map[string]bool

// jsonFieldNames returns the JSON member names of the exported fields of
// the struct type t, as encoding/json would name them.
func jsonFieldNames(t reflect.Type) map[string]bool {
	if v, ok := fieldNamesCache.Load(t); ok {
		return v.(map[string]bool)
	}
	names := make(map[string]bool, t.NumField())
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		names[foldName(name)] = true
	}
	fieldNamesCache.Store(t, names)
	return names
}

// foldName returns the key under which encoding/json matches the member
// name s to a field: it matches names case-insensitively, so Extra must too,
// or a member spelled "Model" would be both decoded into a field and kept.
func foldName(s string) string {
	return strings.Map(func(r rune) rune { return unicode.ToUpper(unicode.ToLower(r)) }, s)
}

// marshalWithExtra encodes known, a struct without custom marshalling, and
// appends the members of extra whose names no field of known claims. The
// extra members follow the known ones in sorted order so that the output is
// deterministic.
func marshalWithExtra(known any, extra map[string]json.RawMessage) ([]byte, error) {
	b, err := json.Marshal(known)
	if err != nil || len(extra) == 0 {
		return b, err
	}
	names := jsonFieldNames(reflect.TypeOf(known))
	keys := make([]string, 0, len(extra))
	for k := range extra {
		if !names[foldName(k)] {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return b, nil
	}
	slices.Sort(keys)
	var buf bytes.Buffer
	buf.Write(b[:len(b)-1]) // drop the closing brace
	empty := len(b) == 2    // "{}"
	for _, k := range keys {
		if !empty {
			buf.WriteByte(',')
		}
		empty = false
		kb, _ := json.Marshal(k) // a string always encodes
		buf.Write(kb)
		buf.WriteByte(':')
		if err := json.Compact(&buf, extra[k]); err != nil {
			return nil, fmt.Errorf("wire: Extra[%q]: %w", k, err)
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// unmarshalExtra decodes the members of the JSON object data that no field
// of the struct type t claims. It returns nil when there are none, so that
// a decoded value compares equal to one built without Extra.
func unmarshalExtra(data []byte, t reflect.Type) (map[string]json.RawMessage, error) {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return nil, err
	}
	names := jsonFieldNames(t)
	for k := range all {
		if names[foldName(k)] {
			delete(all, k)
		}
	}
	if len(all) == 0 {
		return nil, nil
	}
	return all, nil
}
