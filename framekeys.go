package streamer

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// The protocol's top-level keys, in the order of keyBit.
var frameKeys = [...]string{"action", "id", "payload", "metadata"}

// keyMetadata is the bit of "metadata" in a frameKeys mask.
const keyMetadata = 1 << 3

// keyID is the bit of "id" in a frameKeys mask.
const keyID = 1 << 1

// checkFrameKeys enforces the key rules of docs/protocol.md (section 5,
// "Frame keys") on data, a frame that encoding/json found to be valid JSON:
// no top-level key may appear twice, none may differ from a protocol key
// ("action", "id", "payload", "metadata") only in case, and no key of
// metadata may appear twice. encoding/json would otherwise keep the last of
// duplicate keys and match keys case-insensitively, so a proxy that reads
// the first "action" would disagree with the server.
//
// It is one pass over the bytes, skipping the payload without decoding it,
// and it allocates only for escaped keys or many unknown keys. idClean is
// true when the frame's id (if any) is under exactly the key "id", once:
// the id encoding/json decoded can then be trusted for the error reply.
func checkFrameKeys(data []byte) (msg string, idClean bool) {
	s := keyScanner{data: data}
	s.ws()
	if s.i >= len(s.data) || s.data[s.i] != '{' {
		return "", true // not an object: the caller reports it
	}
	s.i++
	var seen uint8
	var others [][]byte
	var otherSet map[string]struct{}
	idClean = true
	for {
		s.ws()
		if s.i >= len(s.data) || s.data[s.i] == '}' {
			return "", idClean
		}
		if s.data[s.i] == ',' {
			s.i++
			s.ws()
		}
		key := s.key()
		s.ws()
		s.i++ // ':'
		s.ws()
		start := s.i
		s.skipValue()
		known := -1
		for k, name := range frameKeys {
			if string(key) == name {
				known = k
				break
			}
		}
		if known >= 0 {
			bit := uint8(1) << known
			if seen&bit != 0 {
				return "the frame has the key " + strconv.Quote(string(key)) + " more than once", idClean && bit != keyID
			}
			seen |= bit
			if bit == keyMetadata && start < len(s.data) && s.data[start] == '{' {
				if dup, ok := duplicateKey(s.data[start:s.i]); ok {
					return "metadata has the key " + strconv.Quote(dup) + " more than once", idClean
				}
			}
			continue
		}
		for _, name := range frameKeys {
			if bytes.EqualFold(key, []byte(name)) {
				return "the frame has the key " + strconv.Quote(string(key)) + "; keys are case-sensitive: use " + strconv.Quote(name), idClean && name != "id"
			}
		}
		// An unknown key: ignored, but only once.
		if otherSet != nil {
			if _, dup := otherSet[string(key)]; dup {
				return "the frame has the key " + strconv.Quote(string(key)) + " more than once", idClean
			}
			otherSet[string(key)] = struct{}{}
			continue
		}
		for _, o := range others {
			if bytes.Equal(o, key) {
				return "the frame has the key " + strconv.Quote(string(key)) + " more than once", idClean
			}
		}
		others = append(others, key)
		if len(others) > 8 {
			otherSet = make(map[string]struct{}, 2*len(others))
			for _, o := range others {
				otherSet[string(o)] = struct{}{}
			}
		}
	}
}

// duplicateKey returns a key that appears more than once in obj, a valid
// JSON object, and true, or false when there is none.
func duplicateKey(obj []byte) (string, bool) {
	s := keyScanner{data: obj, i: 1}
	var keys [][]byte
	var set map[string]struct{}
	for {
		s.ws()
		if s.i >= len(s.data) || s.data[s.i] == '}' {
			return "", false
		}
		if s.data[s.i] == ',' {
			s.i++
			s.ws()
		}
		key := s.key()
		s.ws()
		s.i++ // ':'
		s.ws()
		s.skipValue()
		if set != nil {
			if _, dup := set[string(key)]; dup {
				return string(key), true
			}
			set[string(key)] = struct{}{}
			continue
		}
		for _, k := range keys {
			if bytes.Equal(k, key) {
				return string(key), true
			}
		}
		keys = append(keys, key)
		if len(keys) > 8 {
			set = make(map[string]struct{}, 2*len(keys))
			for _, k := range keys {
				set[string(k)] = struct{}{}
			}
		}
	}
}

// keyScanner walks valid JSON text without building values. Its methods
// never index past the end, whatever data holds, but give meaningful
// answers only for valid JSON.
type keyScanner struct {
	data []byte
	i    int
}

func (s *keyScanner) ws() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// key reads the string at s.i and returns its value, unescaped the way
// encoding/json does. Unless it held an escape, the value is a slice of
// data (no allocation).
func (s *keyScanner) key() []byte {
	start := s.i
	escaped := s.skipString()
	raw := s.data[start:s.i]
	if !escaped {
		if len(raw) >= 2 {
			return raw[1 : len(raw)-1]
		}
		return nil
	}
	var k string
	_ = json.Unmarshal(raw, &k)
	return []byte(k)
}

// skipString moves past the string at s.i (which starts with '"') and
// reports whether it held an escape. It looks for each '"' with
// bytes.IndexByte, and a quote preceded by an odd run of backslashes is
// escaped.
func (s *keyScanner) skipString() (escaped bool) {
	open := s.i
	s.i++
	for s.i < len(s.data) {
		j := bytes.IndexByte(s.data[s.i:], '"')
		if j < 0 {
			break
		}
		end := s.i + j
		if !escaped && bytes.IndexByte(s.data[s.i:end], '\\') >= 0 {
			escaped = true
		}
		n := 0
		for k := end - 1; k > open && s.data[k] == '\\'; k-- {
			n++
		}
		s.i = end + 1
		if n%2 == 0 {
			return escaped
		}
	}
	s.i = len(s.data)
	return escaped
}

// skipValue moves past the value at s.i, counting brackets (no recursion,
// whatever the nesting).
func (s *keyScanner) skipValue() {
	if s.i >= len(s.data) {
		return
	}
	switch s.data[s.i] {
	case '"':
		s.skipString()
		return
	case '{', '[':
	default:
		for s.i < len(s.data) {
			switch s.data[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return
			}
			s.i++
		}
		return
	}
	depth := 0
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case '"':
			s.skipString()
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				s.i++
				return
			}
		}
		s.i++
	}
}
