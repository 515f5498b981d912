package dbcopy

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// convert turns a value as SQLite stores it (int64, float64, string,
// []byte or nil: SQLite's types are the values', not the columns') into the
// Go value of the PostgreSQL column's type. Both sides' checksums are taken
// over converted values, so the same row sums the same on both.
func convert(v any, pgType string) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch pgType {
	case "smallint", "integer", "bigint":
		return toInt(v)
	case "boolean":
		switch x := v.(type) {
		case bool:
			return x, nil
		default:
			n, err := toInt(v)
			return n != 0, err
		}
	case "real", "double precision", "numeric":
		return toFloat(v)
	case "bytea":
		switch x := v.(type) {
		case []byte:
			return x, nil
		case string:
			return []byte(x), nil
		}
	case "json", "jsonb":
		return canonicalJSON(v)
	case "text", "character varying", "character":
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case []byte:
			s = string(x)
		case int64:
			s = strconv.FormatInt(x, 10)
		case float64:
			s = strconv.FormatFloat(x, 'g', -1, 64)
		default:
			return nil, fmt.Errorf("a %T for a text column", v)
		}
		if strings.IndexByte(s, 0) >= 0 {
			return nil, fmt.Errorf("text holding a NUL byte, which PostgreSQL cannot store")
		}
		return s, nil
	case "timestamp with time zone", "timestamp without time zone":
		if t, ok := v.(time.Time); ok {
			return t.UTC(), nil
		}
	}
	return nil, fmt.Errorf("a %T for a column of type %s", v, pgType)
}

func toInt(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case int32:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case bool:
		if x {
			return 1, nil
		}
		return 0, nil
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<63 {
			return int64(x), nil
		}
	case string:
		return strconv.ParseInt(x, 10, 64)
	case []byte:
		return strconv.ParseInt(string(x), 10, 64)
	}
	return 0, fmt.Errorf("%v (%T) is no integer", v, v)
}

func toFloat(v any) (float64, error) {
	switch x := v.(type) {
	case float64:
		return x, nil
	case float32:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case string:
		return strconv.ParseFloat(x, 64)
	case []byte:
		return strconv.ParseFloat(string(x), 64)
	}
	return 0, fmt.Errorf("%v (%T) is no number", v, v)
}

// canonicalJSON is the JSON text with object keys sorted and no spaces, so
// that jsonb's reordering does not change a checksum.
func canonicalJSON(v any) (string, error) {
	var raw []byte
	switch x := v.(type) {
	case string:
		raw = []byte(x)
	case []byte:
		raw = x
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return "", err
		}
		raw = b
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return "", fmt.Errorf("invalid JSON: %w", err)
	}
	out, err := json.Marshal(doc)
	return string(out), err
}

// checksum sums the rows of a table independently of their order: the
// SHA-256 of each row's canonical encoding, added lane by lane, so no side
// needs to sort (SQLite and PostgreSQL collate text differently).
type checksum struct {
	lanes [4]uint64
	rows  int64
}

// add adds one row of converted values.
func (c *checksum) add(row []any) {
	h := sha256.New()
	var n [8]byte
	for _, v := range row {
		var b []byte
		switch x := v.(type) {
		case nil:
			b = []byte{0}
		case int64:
			b = append([]byte{1}, strconv.FormatInt(x, 10)...)
		case bool:
			b = []byte{2, 0}
			if x {
				b[1] = 1
			}
		case float64:
			b = append([]byte{3}, strconv.FormatFloat(x, 'g', -1, 64)...)
		case string:
			b = append([]byte{4}, x...)
		case []byte:
			b = append([]byte{5}, x...)
		case time.Time:
			b = append([]byte{6}, x.UTC().Format(time.RFC3339Nano)...)
		default:
			b = append([]byte{7}, fmt.Sprint(x)...)
		}
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	sum := h.Sum(nil)
	for i := range c.lanes {
		c.lanes[i] += binary.BigEndian.Uint64(sum[8*i:])
	}
	c.rows++
}

func (c *checksum) String() string {
	var b [32]byte
	for i, l := range c.lanes {
		binary.BigEndian.PutUint64(b[8*i:], l)
	}
	return hex.EncodeToString(b[:])
}
