package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// legacyKeys maps every key the flat config file of earlier releases had at
// its top level to its place in a section. Files on disk keep loading: each
// such key is moved to its new place before decoding, with a Notice.
// server_notices, support and app_service_config_files stay at the top level.
var legacyKeys = map[string]string{
	"server_name":              "server.server_name",
	"data_dir":                 "server.data_dir",
	"listen":                   "server.listen",
	"public_baseurl":           "server.public_baseurl",
	"well_known_server":        "server.well_known_server",
	"signing_key_path":         "server.signing_key_path",
	"max_request_body_bytes":   "server.max_request_body_bytes",
	"shutdown_timeout":         "server.shutdown_timeout",
	"trusted_proxies":          "server.trusted_proxies",
	"http_read_header_timeout": "server.http.read_header_timeout",
	"http_read_body_timeout":   "server.http.read_body_timeout",
	"http_idle_timeout":        "server.http.idle_timeout",
	"http_max_connections":     "server.http.max_connections",

	"database_path": "database.path",

	"media_path":                     "media.path",
	"max_upload_bytes":               "media.max_upload_bytes",
	"media_quota_bytes_per_user":     "media.quota_bytes_per_user",
	"thumbnail_memory_bytes":         "media.thumbnail_memory_bytes",
	"url_preview_enabled":            "media.url_preview_enabled",
	"url_preview_ip_range_blacklist": "media.url_preview_ip_range_blacklist",
	"url_preview_ip_range_whitelist": "media.url_preview_ip_range_whitelist",

	// "registration" was the mode; now it is the section (told apart by
	// the value: a word, or a mapping).
	"registration":                      "registration.mode",
	"registration_shared_secret":        "registration.shared_secret",
	"rc_registration":                   "registration.rc_registration",
	"bcrypt_cost":                       "registration.bcrypt_cost",
	"refreshable_access_token_lifetime": "registration.refreshable_access_token_lifetime",

	"default_room_version": "rooms.default_room_version",

	"ip_range_blacklist": "push.ip_range_blacklist",
	"ip_range_whitelist": "push.ip_range_whitelist",

	"turn_uris":          "voip.turn_uris",
	"turn_shared_secret": "voip.turn_shared_secret",
	"turn_user_lifetime": "voip.turn_user_lifetime",

	"log_level":       "logging.level",
	"log_dir":         "logging.dir",
	"log_max_size_mb": "logging.max_size_mb",
	"log_max_files":   "logging.max_files",
}

// Notice is something loading the file has to tell the admin: an old flat
// key that was read into its place in a section.
type Notice struct {
	Key    string // the key as written, e.g. "server_name"
	NewKey string // its place now, e.g. "server.server_name"
	Line   int
}

func (n Notice) String() string {
	return fmt.Sprintf("config: old top-level key %s (line %d) was read as %s; move it there", n.Key, n.Line, n.NewKey)
}

// migrateLegacy moves the old flat keys of a file's top-level mapping to
// their sections. A key given both ways must have the same value in both.
func migrateLegacy(root *yaml.Node) ([]Notice, error) {
	var errs []error
	var moves []*yaml.Node // key, value pairs
	kept := make([]*yaml.Node, 0, len(root.Content))
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if first, dup := seen[k.Value]; dup {
			errs = append(errs, fmt.Errorf("line %d: %s is given twice (first on line %d)", k.Line, k.Value, first))
			continue
		}
		seen[k.Value] = k.Line
		if isLegacy(k.Value, v) {
			moves = append(moves, k, v)
		} else {
			kept = append(kept, k, v)
		}
	}
	root.Content = kept
	var notices []Notice
	for i := 0; i < len(moves); i += 2 {
		k, v := moves[i], moves[i+1]
		newKey := legacyKeys[k.Value]
		if err := place(root, newKey, k, v); err != nil {
			errs = append(errs, err)
			continue
		}
		notices = append(notices, Notice{Key: k.Value, NewKey: newKey, Line: k.Line})
	}
	return notices, errors.Join(errs...)
}

// isLegacy tells an old flat key from a section of the same name.
func isLegacy(key string, v *yaml.Node) bool {
	if _, ok := legacyKeys[key]; !ok {
		return false
	}
	if key == "registration" {
		v = deref(v)
		return v.Kind == yaml.ScalarNode && v.ShortTag() != "!!null"
	}
	return true
}

// place puts value at the dotted path newKey under root, creating sections
// as needed; oldKey is the key it was found under (for lines and messages).
func place(root *yaml.Node, newKey string, oldKey, value *yaml.Node) error {
	parts := strings.Split(newKey, ".")
	m := root
	for i, p := range parts[:len(parts)-1] {
		_, sec := lookup(m, p)
		switch {
		case sec == nil:
			sec = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: oldKey.Line, Column: oldKey.Column}
			m.Content = append(m.Content, keyNode(p, oldKey), sec)
		case sec.Kind == yaml.ScalarNode && sec.ShortTag() == "!!null":
			// "media:" with every key commented out.
			*sec = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: sec.Line, Column: sec.Column}
		case sec.Kind != yaml.MappingNode:
			return fmt.Errorf("line %d: %s must be a section of keys (it is to hold %s, from line %d)",
				sec.Line, strings.Join(parts[:i+1], "."), newKey, oldKey.Line)
		}
		m = sec
	}
	leaf := parts[len(parts)-1]
	if k, existing := lookup(m, leaf); existing != nil {
		if t, ok := typeAt(newKey); !ok || !sameValue(t, existing, value) {
			return fmt.Errorf("line %d: %s and %s (line %d) are both given, with different values: keep only %s",
				oldKey.Line, oldKey.Value, newKey, k.Line, newKey)
		}
		return nil
	}
	m.Content = append(m.Content, keyNode(leaf, oldKey), value)
	return nil
}

// keyNode is a new mapping key standing where the old key stood.
func keyNode(name string, at *yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: name, Line: at.Line, Column: at.Column}
}

// lookup finds key in a mapping node: its key and value nodes, or nils.
func lookup(m *yaml.Node, key string) (k, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i], deref(m.Content[i+1])
		}
	}
	return nil, nil
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// sameValue reports whether two nodes decode to equal values of type t.
func sameValue(t reflect.Type, a, b *yaml.Node) bool {
	decode := func(n *yaml.Node) (any, bool) {
		var errs []error
		checkNode(n, t, "", &errs)
		v := reflect.New(t)
		if len(errs) > 0 || n.Decode(v.Interface()) != nil {
			return nil, false
		}
		return v.Elem().Interface(), true
	}
	av, aok := decode(a)
	bv, bok := decode(b)
	return aok && bok && reflect.DeepEqual(av, bv)
}
