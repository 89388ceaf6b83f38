package testenv

import (
	"net/http"
	"sort"
	"sync"
	"time"
)

// RateCap is a FaultFunc that plays a store's request limit: it answers
// 503 SlowDown to every request above N in each second (counted across
// all clients, as S3 counts a prefix's), and counts each second's
// requests.
type RateCap struct {
	N int

	mu     sync.Mutex
	counts map[int64]*Second
}

// Second is one second's requests at a RateCap.
type Second struct {
	Unix     int64
	Requests int // all requests, the refused ones too
	Refused  int
}

// NewRateCap returns a cap of n requests a second.
func NewRateCap(n int) *RateCap { return &RateCap{N: n, counts: map[int64]*Second{}} }

// Rule is the cap as a FaultProxy rule.
func (c *RateCap) Rule() FaultFunc {
	return func(*http.Request) Fault {
		now := time.Now().Unix()
		c.mu.Lock()
		defer c.mu.Unlock()
		s := c.counts[now]
		if s == nil {
			s = &Second{Unix: now}
			c.counts[now] = s
		}
		s.Requests++
		if s.Requests > c.N {
			s.Refused++
			return Fault{Action: Status, Status: http.StatusServiceUnavailable, Code: "SlowDown"}
		}
		return Fault{}
	}
}

// Series is every second that saw a request, in order; seconds without
// one in between are left out.
func (c *RateCap) Series() []Second {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Second, 0, len(c.counts))
	for _, s := range c.counts {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Unix < out[j].Unix })
	return out
}
