package admin

import (
	"sync"
	"time"

	"github.com/securechat/securechat/appliance"
)

// sample is one point of the dashboard's chart: rates over the time since
// the point before.
type sample struct {
	Time        int64   `json:"t"` // Unix milliseconds
	Messages    float64 `json:"messages"`
	Deliveries  float64 `json:"deliveries"`
	BytesIn     float64 `json:"bytes_in"`
	BytesOut    float64 `json:"bytes_out"`
	Connections int64   `json:"connections"`
	Limited     float64 `json:"limited"`
}

const (
	seriesKeep  = 300 // points: ten minutes at the dashboard's 2 s refresh
	seriesEvery = time.Second
)

// series keeps the recent samples of the server's counters. It samples
// when asked (the dashboard polls it), so it costs nothing while nobody
// watches.
type series struct {
	mu      sync.Mutex // guards all below
	last    appliance.StatsSnapshot
	have    bool
	samples []sample
}

// observe records snap if a second has passed since the last sample and
// returns the latest sample.
func (s *series) observe(snap appliance.StatsSnapshot) sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.have || snap.Time.Before(s.last.Time) || snap.MessagesIn < s.last.MessagesIn {
		s.last, s.have = snap, true // first, or the server restarted under us
		return s.latestLocked()
	}
	dt := snap.Time.Sub(s.last.Time)
	if dt < seriesEvery {
		return s.latestLocked()
	}
	per := func(now, before int64) float64 { return float64(now-before) / dt.Seconds() }
	p := sample{
		Time:        snap.Time.UnixMilli(),
		Messages:    per(snap.MessagesIn, s.last.MessagesIn),
		Deliveries:  per(snap.Deliveries, s.last.Deliveries),
		BytesIn:     per(snap.BytesIn, s.last.BytesIn),
		BytesOut:    per(snap.BytesOut, s.last.BytesOut),
		Connections: snap.Connections,
		Limited:     per(snap.Limited, s.last.Limited),
	}
	s.samples = append(s.samples, p)
	if len(s.samples) > seriesKeep {
		s.samples = append(s.samples[:0], s.samples[len(s.samples)-seriesKeep:]...)
	}
	s.last = snap
	return p
}

func (s *series) latestLocked() sample {
	if len(s.samples) == 0 {
		return sample{Time: s.last.Time.UnixMilli(), Connections: s.last.Connections}
	}
	return s.samples[len(s.samples)-1]
}

func (s *series) list() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]sample, len(s.samples))
	copy(out, s.samples)
	return out
}
