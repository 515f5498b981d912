package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Parse reads YAML over cfg. Old flat keys are moved into their sections
// first (cfg.Notices says which); unknown keys, keys given twice and values
// of the wrong type are refused with the line and the full key.
func Parse(raw []byte, cfg *Config) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return err
	}
	if len(doc.Content) == 0 {
		return nil // an empty file means "all defaults"
	}
	root := deref(doc.Content[0])
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: the file must be a mapping of keys to values", root.Line)
	}
	notices, err := migrateLegacy(root)
	if err != nil {
		return err
	}
	var errs []error
	checkNode(root, configType, "", &errs)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := root.Decode(cfg); err != nil {
		return err
	}
	cfg.Notices = append(cfg.Notices, notices...)
	return nil
}

var configType = reflect.TypeOf(Config{})

// checkNode walks a YAML node along the Go type it decodes into. It refuses
// unknown keys and keys given twice, naming the full key and its line, and
// turns the yes/no spellings ParseBool accepts into plain booleans for the
// decoder. Values of the wrong type are left for the decoder to report.
func checkNode(n *yaml.Node, t reflect.Type, path string, errs *[]error) {
	n = deref(n)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		if n.Kind == yaml.ScalarNode && n.ShortTag() != "!!null" {
			b, err := ParseBool(n.Value)
			if err != nil {
				*errs = append(*errs, fmt.Errorf("line %d: %s: %w", n.Line, path, err))
				return
			}
			n.Value, n.Tag, n.Style = strconv.FormatBool(b), "!!bool", 0
		}
	case reflect.Struct:
		if n.Kind == yaml.MappingNode {
			checkMapping(n, t, path, errs)
		}
	case reflect.Slice:
		if n.Kind == yaml.SequenceNode {
			for i, e := range n.Content {
				checkNode(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
			}
		}
	case reflect.Map:
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				checkNode(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), errs)
			}
		}
	}
}

// checkMapping checks the keys of a mapping that decodes into struct t.
func checkMapping(n *yaml.Node, t reflect.Type, path string, errs *[]error) {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.ShortTag() == "!!merge" {
			// <<: *anchor merges another mapping's keys in.
			for _, m := range mergeSources(v) {
				checkMapping(m, t, path, errs)
			}
			continue
		}
		key := join(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			*errs = append(*errs, fmt.Errorf("line %d: %s is given twice (first on line %d)", k.Line, key, first))
			continue
		}
		seen[k.Value] = k.Line
		f, ok := fieldByKey(t, k.Value)
		if !ok {
			*errs = append(*errs, fmt.Errorf("line %d: unknown key %s", k.Line, key))
			continue
		}
		checkNode(v, f.Type, key, errs)
	}
}

// mergeSources are the mappings a merge key's value names.
func mergeSources(v *yaml.Node) []*yaml.Node {
	v = deref(v)
	if v.Kind == yaml.SequenceNode {
		var out []*yaml.Node
		for _, e := range v.Content {
			if e = deref(e); e.Kind == yaml.MappingNode {
				out = append(out, e)
			}
		}
		return out
	}
	if v.Kind == yaml.MappingNode {
		return []*yaml.Node{v}
	}
	return nil
}

// fieldByKey finds the struct field a YAML key names.
func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if name == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// typeAt is the Go type of the value at a dotted key path of the file.
func typeAt(path string) (reflect.Type, bool) {
	t := configType
	for _, p := range strings.Split(path, ".") {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return nil, false
		}
		f, ok := fieldByKey(t, p)
		if !ok {
			return nil, false
		}
		t = f.Type
	}
	return t, true
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
