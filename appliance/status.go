package appliance

import (
	"cmp"
	"context"
	"time"

	"github.com/securechat/securechat/transport"
)

// The admin's views of the server: its accounts and its counters.

// UserInfo describes an account for the admin API.
type UserInfo struct {
	Name     string    `json:"name"`
	Created  time.Time `json:"created"`
	Devices  int       `json:"devices"`
	LastSeen time.Time `json:"last_seen"`
	Online   int       `json:"online"` // connected devices
	Banned   bool      `json:"banned"`
	Muted    bool      `json:"muted"`
	// MutedUntil is when a mute ends; zero while muted means until unmuted.
	MutedUntil time.Time `json:"muted_until,omitzero"`
	// DeviceList is the account's devices, by id: each one's name (as
	// its device gave it), when it was added and last seen.
	DeviceList []DeviceInfo `json:"device_list"`
}

// DeviceInfo describes one device of an account for the admin.
type DeviceInfo struct {
	ID       uint32    `json:"id"`
	Name     string    `json:"name"`
	Added    time.Time `json:"added"`
	LastSeen time.Time `json:"last_seen"`
}

// Users lists the accounts, by name.
func (s *Server) Users(ctx context.Context) ([]UserInfo, error) {
	online := make(map[string]int)
	s.mu.Lock()
	for sess := range s.sessions {
		if u := sess.authedUser(); u != "" {
			online[u]++
		}
	}
	s.mu.Unlock()
	now := s.cfg.Now()
	accounts, err := s.store.ListAccounts()
	var out []UserInfo
	for _, a := range accounts {
		u := UserInfo{Name: a.Name, Created: a.Created, Devices: a.Devices, LastSeen: a.LastSeen, Online: online[a.Name]}
		for _, d := range a.DeviceList {
			u.DeviceList = append(u.DeviceList, DeviceInfo{ID: d.Device.ID, Name: d.Name, Added: d.Created, LastSeen: d.LastSeen})
		}
		_, u.Banned = s.bans.userBanned(u.Name, now)
		u.MutedUntil, u.Muted = s.mutes.muted(u.Name, now)
		out = append(out, u)
	}
	return out, err
}

// StatsSnapshot is the admin API's view of the server's counters.
type StatsSnapshot struct {
	Time          time.Time `json:"time"`
	Uptime        string    `json:"uptime"`
	UptimeSeconds int64     `json:"uptime_seconds"`
	Connections   int64     `json:"connections"`
	Accepted      int64     `json:"accepted"`
	MessagesIn    int64     `json:"messages_in"`
	GroupMessages int64     `json:"group_messages"`
	BytesIn       int64     `json:"bytes_in"`
	Deliveries    int64     `json:"deliveries"`
	BytesOut      int64     `json:"bytes_out"`
	AuthFailed    int64     `json:"auth_failed"`
	Refused       int64     `json:"refused"`
	Limited       int64     `json:"limited"`
	Dropped       int64     `json:"signals_dropped"`
	// StoreDamaged counts the store operations that met a damaged part of
	// the store since start (operations.md §7).
	StoreDamaged int64 `json:"store_damaged"`
	QueueDepth   int   `json:"queue_depth"`
	StoreBytes   int64 `json:"store_bytes"`
	// Groups is the group records the store keeps; SharedPayloads and
	// SharedBytes the group messages' payloads, stored once each.
	Groups         int   `json:"groups"`
	SharedPayloads int   `json:"shared_payloads"`
	SharedBytes    int64 `json:"shared_bytes"`
	// Blobs and BlobBytes are the encrypted files stored and the bytes
	// they reserve (protocol.md §6.8); BlobBytesIn and BlobBytesOut the
	// bytes uploaded and downloaded since start.
	Blobs        int                   `json:"blobs"`
	BlobBytes    int64                 `json:"blob_bytes"`
	BlobBytesIn  int64                 `json:"blob_bytes_in"`
	BlobBytesOut int64                 `json:"blob_bytes_out"`
	Bans         int                   `json:"bans"`
	Fingerprint  transport.Fingerprint `json:"fingerprint"` // 64 plain hex digits in JSON
	// Registration is the registration policy: open, invite or closed.
	Registration string `json:"registration"`
	// The data directory's filesystem (diskfull.go): bytes free and its
	// size (0 when they cannot be read), DiskLow when free is under
	// disk_free_warn (DiskFreeWarn), StorageFull while a write found no
	// room and room has not returned, StorageFullRefusals the requests
	// refused for it since start.
	DiskFree            int64 `json:"disk_free"`
	DiskSize            int64 `json:"disk_size"`
	DiskFreeWarn        int64 `json:"disk_free_warn"`
	DiskLow             bool  `json:"disk_low"`
	StorageFull         bool  `json:"storage_full"`
	StorageFullRefusals int64 `json:"storage_full_refusals"`
	// Automatic backups (backups.go) written and failed since start.
	Backups       int64 `json:"backups"`
	BackupsFailed int64 `json:"backups_failed"`
}

// Snapshot reads the counters.
func (s *Server) Snapshot(ctx context.Context) (StatsSnapshot, error) {
	now := s.cfg.Now()
	up := now.Sub(s.started)
	st := s.store.Stats()
	s.checkDisk()
	free, size := int64(s.disk.free.Load()), int64(s.disk.size.Load())
	return StatsSnapshot{
		Time:           now,
		Uptime:         FormatDuration(up.Round(time.Second)),
		UptimeSeconds:  int64(up / time.Second),
		Connections:    s.stats.Connections.Load(),
		Accepted:       s.stats.Accepted.Load(),
		MessagesIn:     s.stats.MessagesIn.Load(),
		GroupMessages:  s.stats.GroupMessages.Load(),
		BytesIn:        s.stats.BytesIn.Load(),
		Deliveries:     s.stats.Deliveries.Load(),
		BytesOut:       s.stats.BytesOut.Load(),
		AuthFailed:     s.stats.AuthFailed.Load(),
		Refused:        s.stats.Refused.Load(),
		Limited:        s.stats.Limited.Load(),
		Dropped:        s.stats.Dropped.Load(),
		StoreDamaged:   s.stats.StoreDamaged.Load(),
		QueueDepth:     st.QueueDepth,
		StoreBytes:     st.Bytes,
		Groups:         st.Groups,
		SharedPayloads: st.SharedPayloads,
		SharedBytes:    st.SharedBytes,
		Blobs:          st.Blobs,
		BlobBytes:      st.BlobBytes,
		BlobBytesIn:    s.stats.BlobBytesIn.Load(),
		BlobBytesOut:   s.stats.BlobBytesOut.Load(),
		Bans:           len(s.bans.list(now)),
		Fingerprint:    s.fp,
		Registration:   cmp.Or(s.cfg.Registration, RegistrationOpen),

		DiskFree:            free,
		DiskSize:            size,
		DiskFreeWarn:        int64(s.cfg.DiskFreeWarn),
		DiskLow:             s.disk.known.Load() && free < int64(s.cfg.DiskFreeWarn),
		StorageFull:         s.storageFull(),
		StorageFullRefusals: s.stats.StorageFull.Load(),
		Backups:             s.stats.Backups.Load(),
		BackupsFailed:       s.stats.BackupsFailed.Load(),
	}, nil
}
