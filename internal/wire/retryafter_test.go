package wire

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	date := func(d time.Duration) string { return now.Add(d).Format(http.TimeFormat) }
	for _, tc := range []struct {
		name string
		h    http.Header
		want time.Duration
		ok   bool
	}{
		{"absent", http.Header{}, 0, false},
		{"nil", nil, 0, false},
		{"seconds", header("Retry-After", "20"), 20 * time.Second, true},
		{"decimal seconds", header("retry-after", "1.5"), 1500 * time.Millisecond, true},
		{"zero", header("retry-after", "0"), 0, true},
		{"ms wins", header("retry-after-ms", "250", "retry-after", "1"), 250 * time.Millisecond, true},
		{"fractional ms", header("retry-after-ms", "12.5"), 12500 * time.Microsecond, true},
		{"ms with spaces", header("retry-after-ms", " 40 "), 40 * time.Millisecond, true},
		{"bad ms falls back", header("retry-after-ms", "soon", "retry-after", "3"), 3 * time.Second, true},
		{"empty ms falls back", header("retry-after-ms", "", "retry-after", "3"), 3 * time.Second, true},
		{"http date", header("retry-after", date(90*time.Second)), 90 * time.Second, true},
		{"rfc850 date", header("retry-after", now.Add(5*time.Second).Format("Monday, 02-Jan-06 15:04:05 GMT")), 5 * time.Second, true},
		{"past date", header("retry-after", date(-time.Hour)), 0, true},
		{"negative seconds", header("retry-after", "-5"), 0, true},
		{"negative ms", header("retry-after-ms", "-5"), 0, true},
		{"capped seconds", header("retry-after", "86400"), MaxRetryAfter, true},
		{"capped ms", header("retry-after-ms", "6000000"), MaxRetryAfter, true},
		{"capped date", header("retry-after", date(24*time.Hour)), MaxRetryAfter, true},
		{"overflowing seconds", header("retry-after", "1e300"), MaxRetryAfter, true},
		{"overflowing negative", header("retry-after", "-1e300"), 0, true},
		{"overflowing ms", header("retry-after-ms", "1e400"), MaxRetryAfter, true},
		{"overflowing negative ms", header("retry-after-ms", "-1e400"), 0, true},
		{"garbage", header("retry-after", "later"), 0, false},
		{"hex is not a number", header("retry-after", "0x10"), 0, false},
		{"inf is not a number", header("retry-after", "Inf"), 0, false},
		{"nan is not a number", header("retry-after", "NaN"), 0, false},
		{"underscore is not a number", header("retry-after", "1_0"), 0, false},
		{"lone sign", header("retry-after", "-"), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseRetryAfter(tc.h, now)
			if got != tc.want || ok != tc.ok {
				t.Errorf("got %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func ExampleParseRetryAfter() {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

	h := http.Header{}
	h.Set("Retry-After", "2")
	h.Set("Retry-After-Ms", "1500")
	d, ok := ParseRetryAfter(h, now)
	fmt.Println(d, ok)

	h = http.Header{}
	h.Set("Retry-After", "Wed, 01 Jan 2025 00:00:30 GMT")
	d, ok = ParseRetryAfter(h, now)
	fmt.Println(d, ok)

	h.Set("Retry-After", "86400")
	d, ok = ParseRetryAfter(h, now)
	fmt.Println(d, ok)
	// Output:
	// 1.5s true
	// 30s true
	// 10m0s true
}
