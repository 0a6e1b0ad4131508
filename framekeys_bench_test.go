package streamer

import (
	"strings"
	"testing"
)

// BenchmarkDecodeFrame measures the frame decoder on a typical echo frame
// and on one with a 64 KiB payload (the key check skips it once).
func BenchmarkDecodeFrame(b *testing.B) {
	for _, bc := range []struct{ name, frame string }{
		{"echo", `{"action":"echo","id":"r-1","payload":{"text":"hello","n":[1,2,3]},"metadata":{"trace":"t-1"}}`},
		{"payload64k", `{"action":"echo","id":"r-2","payload":{"s":"` + strings.Repeat("x", 65536) + `"}}`},
	} {
		data := []byte(bc.frame)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := DecodeFrame(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCheckFrameKeys measures the key check alone, the cost
// DecodeFrame pays for it.
func BenchmarkCheckFrameKeys(b *testing.B) {
	for _, bc := range []struct{ name, frame string }{
		{"echo", `{"action":"echo","id":"r-1","payload":{"text":"hello","n":[1,2,3]},"metadata":{"trace":"t-1"}}`},
		{"payload64k", `{"action":"echo","id":"r-2","payload":{"s":"` + strings.Repeat("x", 65536) + `"}}`},
	} {
		data := []byte(bc.frame)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if msg, _ := checkFrameKeys(data); msg != "" {
					b.Fatal(msg)
				}
			}
		})
	}
}
