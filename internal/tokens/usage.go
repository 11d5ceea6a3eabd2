package tokens

import (
	"context"
	"crypto/rand"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/jetonhq/jeton/internal/store"
)

// meter counts usage and quota consumption in memory. Nothing here writes
// to the store; FlushUsage drains the counts in one batched write.
type meter struct {
	shards [32]meterShard
}

type meterShard struct {
	mu    sync.Mutex
	usage map[string]*usageCounter
	quota map[string]*quotaState
	// staleQuota holds consumption from finished periods or forgotten
	// states, waiting for the next flush.
	staleQuota []store.QuotaDelta
}

type usageCounter struct {
	hours      []store.UsageHour // the last element is the current hour
	lastUsedAt time.Time
	lastUsedIP netip.Addr
}

// quotaState is a node's running count of one token's quota, built from
// the token's stored quota of version version.
type quotaState struct {
	periodStart time.Time // zero for a quota without refill
	remaining   int64
	consumed    int64 // since the last flush
	amount      int64
	interval    string
	version     int64 // the store.Quota.Version it was built from
	// active is when (Unix nanoseconds) the state last consumed quota or
	// had its consumption drained for a flush: drain drops states idle
	// for longer than the cache TTL.
	active int64
}

func newMeter() *meter {
	m := &meter{}
	for i := range m.shards {
		m.shards[i].usage = make(map[string]*usageCounter)
		m.shards[i].quota = make(map[string]*quotaState)
	}
	return m
}

func (m *meter) shard(id string) *meterShard {
	// IDs end in random base62 characters.
	var h uint32
	for i := max(0, len(id)-4); i < len(id); i++ {
		h = h*31 + uint32(id[i])
	}
	return &m.shards[h%uint32(len(m.shards))]
}

// count records one verification of token id at now.
func (m *meter) count(id string, now time.Time, ip netip.Addr, allowed bool) {
	hour := now.UTC().Truncate(time.Hour)
	s := m.shard(id)
	s.mu.Lock()
	c := s.usage[id]
	if c == nil {
		c = &usageCounter{hours: make([]store.UsageHour, 0, 1)}
		s.usage[id] = c
	}
	if n := len(c.hours); n == 0 || !c.hours[n-1].Hour.Equal(hour) {
		c.hours = append(c.hours, store.UsageHour{Hour: hour})
	}
	cur := &c.hours[len(c.hours)-1]
	if allowed {
		cur.Allowed++
		if !now.Before(c.lastUsedAt) {
			c.lastUsedAt, c.lastUsedIP = now, ip
		}
	} else {
		cur.Denied++
	}
	s.mu.Unlock()
}

// periodStart returns the start of the refill period containing now.
func periodStart(interval string, now time.Time) time.Time {
	now = now.UTC()
	switch interval {
	case store.RefillDaily:
		return time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	case store.RefillMonthly:
		return time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	return time.Time{}
}

// takeQuota consumes one unit of token id's quota and returns what remains
// and whether the unit was available. q is the token's quota as a record
// read from the store has it.
//
// The state is built from q when there is none, and built again when q is
// of a later version than the state (the quota was set since, on this node
// or another): the consumption counted against the replaced quota is
// dropped, as the store would drop it. A q of an earlier version than the
// state comes from a record read before the quota was set (a verification
// in flight during the change): the state is newer and stays.
func (m *meter) takeQuota(id string, q *store.Quota, now time.Time) (int64, bool) {
	s := m.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.quota[id]
	if st == nil || q.Version > st.version {
		if st == nil {
			st = &quotaState{}
			s.quota[id] = st
		}
		*st = quotaState{remaining: q.Remaining, amount: q.RefillAmount, interval: q.RefillInterval, periodStart: q.PeriodStart, version: q.Version}
		if p := periodStart(q.RefillInterval, now); p.After(q.PeriodStart) {
			st.periodStart, st.remaining = p, q.RefillAmount
		}
	} else if p := periodStart(st.interval, now); p.After(st.periodStart) {
		if st.consumed > 0 {
			s.staleQuota = append(s.staleQuota, st.delta(id))
		}
		st.periodStart, st.remaining, st.consumed = p, st.amount, 0
	}
	st.active = now.UnixNano()
	if st.remaining <= 0 {
		return 0, false
	}
	st.remaining--
	st.consumed++
	return st.remaining, true
}

func (st *quotaState) delta(id string) store.QuotaDelta {
	return store.QuotaDelta{TokenID: id, PeriodStart: st.periodStart, RefillAmount: st.amount, Consumed: st.consumed, Version: st.version}
}

// forget drops the in-memory state of token id if it was built from a
// quota older than version (the quota was set, and the store now has
// version; 0 when the quota was removed). Its unflushed consumption was
// counted against the replaced quota, which the store no longer has: it is
// dropped with it. A state of version or later is kept: a verification
// that read the token after the change already counts against it.
func (m *meter) forget(id string, version int64) {
	s := m.shard(id)
	s.mu.Lock()
	if st := s.quota[id]; st != nil && (version == 0 || st.version < version) {
		delete(s.quota, id)
	}
	s.mu.Unlock()
}

// drain takes every count since the last drain, and drops the quota states
// that have nothing left to flush and have been idle for longer than idle
// (the cache TTL) at now: the next verification rebuilds such a state from
// a record read from the store after their last consumption was drained.
// A shard holding deltas of a failed flush keeps its states until they
// are written: the store does not have them yet.
func (m *meter) drain(now time.Time, idle time.Duration) ([]store.UsageDelta, []store.QuotaDelta) {
	nowNS, idleNS := now.UnixNano(), int64(idle)
	var usage []store.UsageDelta
	var quota []store.QuotaDelta
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		for id, c := range s.usage {
			d := store.UsageDelta{TokenID: id, Hours: c.hours, LastUsedAt: c.lastUsedAt}
			if c.lastUsedIP.IsValid() {
				d.LastUsedIP = c.lastUsedIP.String()
			}
			usage = append(usage, d)
		}
		clear(s.usage)
		pending := len(s.staleQuota) > 0
		quota = append(quota, s.staleQuota...)
		s.staleQuota = nil
		for id, st := range s.quota {
			switch {
			case st.consumed > 0:
				quota = append(quota, st.delta(id))
				st.consumed, st.active = 0, max(st.active, nowNS)
			case !pending && nowNS-st.active > idleNS:
				delete(s.quota, id)
			}
		}
		s.mu.Unlock()
	}
	return usage, quota
}

// restore puts counts back into memory, merged with those counted since,
// so that they are sent again under a new id (the store refused the write
// that carried them). A quota delta waits with the finished
// periods' for the next flush, and keeps its shard's states until then.
func (m *meter) restore(usage []store.UsageDelta, quota []store.QuotaDelta) {
	for _, d := range usage {
		s := m.shard(d.TokenID)
		s.mu.Lock()
		c := s.usage[d.TokenID]
		if c == nil {
			c = &usageCounter{}
			s.usage[d.TokenID] = c
		}
		c.hours = append(slices.Clip(d.Hours), c.hours...) // older hours first; the store sums duplicates
		if d.LastUsedAt.After(c.lastUsedAt) {
			c.lastUsedAt = d.LastUsedAt
			c.lastUsedIP, _ = netip.ParseAddr(d.LastUsedIP)
		}
		s.mu.Unlock()
	}
	for _, q := range quota {
		s := m.shard(q.TokenID)
		s.mu.Lock()
		s.staleQuota = append(s.staleQuota, q)
		s.mu.Unlock()
	}
}

// touch marks the quota states of the deltas in quota as active at now:
// their consumption reached the store only now, so a record read before
// now (during the write, or while a failed write waited to be sent again)
// may still be cached, without it, for the cache TTL.
func (m *meter) touch(quota []store.QuotaDelta, now time.Time) {
	ns := now.UnixNano()
	for _, q := range quota {
		s := m.shard(q.TokenID)
		s.mu.Lock()
		if st := s.quota[q.TokenID]; st != nil {
			st.active = max(st.active, ns)
		}
		s.mu.Unlock()
	}
}

// usageChunk is how many deltas FlushUsage writes per store call. Each
// call is one write among the store's others; on SQLite they all go
// through one writer, and the usage of 20,000 tokens written in one call
// held every other write (token creates, refreshes) for about half a
// second, every flush interval.
const usageChunk = 256

// FlushUsage writes the usage and quota consumption counted since the last
// flush, in writes of at most usageChunk deltas, each under an id of its
// own. A write that fails may still have been committed (its reply was
// lost), so it is not merged back into the counts: it and the writes after
// it are kept as they are and sent first, unchanged and under the same
// ids, by the next flush, and the store applies each once. Until they are
// written nothing newer is drained; the counts go on in memory. A kept
// write stays kept whatever its next tries answer: a try the store refused
// wrote nothing, but an earlier one may have. A write refused at its first
// try (it wrote nothing) is merged back into memory instead (failedFlush).
// The ids of the writes known to be written go with the next write, and
// the store forgets them.
func (s *Service) FlushUsage(ctx context.Context) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	for len(s.unsent) > 0 {
		f := s.unsent[0]
		// Counted from this try: if it is the one written, the store
		// keeps its id usageFlushMemory from now.
		f.At = s.cfg.Now()
		if err := s.store.RecordUsage(ctx, f); err != nil {
			return err
		}
		s.unsent = s.unsent[1:]
		s.wrote(f)
	}
	s.unsent = nil
	now := s.cfg.Now()
	usage, quota := s.usage.drain(now, s.cfg.CacheTTL)
	var flushes []store.UsageFlush
	for len(usage) > 0 || len(quota) > 0 || len(flushes) == 0 && len(s.written) > 0 {
		nu := min(len(usage), usageChunk)
		nq := min(len(quota), usageChunk-nu)
		f := store.UsageFlush{ID: rand.Text(), At: now, Usage: usage[:nu], Quota: quota[:nq]}
		if len(flushes) == 0 {
			f.Written, s.written = s.written, nil
		}
		flushes = append(flushes, f)
		usage, quota = usage[nu:], quota[nq:]
	}
	for i, f := range flushes {
		if err := s.store.RecordUsage(ctx, f); err != nil {
			s.failedFlush(err, flushes[i:])
			return err
		}
		s.wrote(f)
	}
	return nil
}

// wrote records that flush write f is in the store.
func (s *Service) wrote(f store.UsageFlush) {
	if len(f.Usage) > 0 || len(f.Quota) > 0 {
		s.written = append(s.written, f.ID)
	}
	// A record read from the store before this write, without its
	// consumption, may be cached for the cache TTL from its read: the
	// states it went to must outlive it (drain).
	s.usage.touch(f.Quota, s.cfg.Now())
}

// failedFlush keeps the writes of a flush that failed with err at its
// first try, rest, the failed one first, for the next flush. A write the
// store refused wrote nothing: its counts go back into memory, merged with
// newer ones, and are sent under new ids. One that failed otherwise may
// have been committed, and is sent again unchanged.
func (s *Service) failedFlush(err error, rest []store.UsageFlush) {
	if !errors.Is(err, store.ErrRefused) {
		s.unsent = rest
		return
	}
	for _, f := range rest {
		s.usage.restore(f.Usage, f.Quota)
		s.written = append(s.written, f.Written...)
	}
	s.unsent = nil
}

// usageFlushMemory is how long the store keeps the id of a usage flush
// from the try that wrote it, when its node never said it saw it written
// (the node stopped or crashed before its next flush, and will not send it
// again). A node sends a failed flush again at every flush interval (10 s
// by default) until that succeeds; one sent again after this long, because
// the store went down for that long right after committing a try whose
// reply was lost, would count twice.
const usageFlushMemory = 30 * 24 * time.Hour

// PurgeUsageFlushes forgets the ids of usage flushes older than
// usageFlushMemory, in batches, and returns how many it forgot.
func (s *Service) PurgeUsageFlushes(ctx context.Context) (int, error) {
	cutoff := s.cfg.Now().Add(-usageFlushMemory)
	return s.purge(ctx, func(ctx context.Context) (int, error) {
		return s.store.PurgeUsageFlushes(ctx, cutoff, s.cfg.JanitorBatch)
	})
}

// every runs job each interval until Close, with timeout as its deadline,
// logging and counting its failures under op.
func (s *Service) every(interval, timeout time.Duration, op string, job func(context.Context) error) {
	s.everyOrWhen(interval, timeout, op, nil, nil, job)
}

// everyOrWhen is every, and also runs job whenever woken is closed, and
// then the channel wake returns (taken anew before each run); wake may be
// nil. The caller takes the first channel before the state job keeps
// fresh was first loaded, so that no change after that load is missed.
func (s *Service) everyOrWhen(interval, timeout time.Duration, op string, wake func() <-chan struct{}, woken <-chan struct{}, job func(context.Context) error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-woken:
			woken = wake()
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := job(ctx)
		cancel()
		if err != nil {
			s.cfg.Logger.Error("background store work failed", "op", op, "err", err)
			if s.cfg.OnStoreError != nil {
				s.cfg.OnStoreError(op)
			}
		}
	}
}

func (s *Service) flushLoop() {
	s.every(s.cfg.UsageFlushInterval, 30*time.Second, "flush_usage", s.FlushUsage)
}

// PurgeExpired deletes tokens that expired or were revoked more than the
// retention period ago (OAuth access tokens: the access token retention),
// in batches of JanitorBatch, until none is left or ctx ends, and returns
// how many it deleted.
func (s *Service) PurgeExpired(ctx context.Context) (int, error) {
	cutoff := s.cfg.Now().Add(-s.cfg.Retention)
	accessCutoff := s.cfg.Now().Add(-min(s.cfg.AccessTokenRetention, s.cfg.Retention))
	return s.purge(ctx, func(ctx context.Context) (int, error) {
		return s.store.PurgeTokens(ctx, cutoff, accessCutoff, s.cfg.JanitorBatch)
	})
}

// PurgeRevocations deletes the entries of the revocation feed that
// expired, in batches, until none is left or ctx ends, and returns how
// many it deleted.
func (s *Service) PurgeRevocations(ctx context.Context) (int, error) {
	return s.purge(ctx, func(ctx context.Context) (int, error) {
		return s.store.PurgeRevocations(ctx, s.cfg.Now(), s.cfg.JanitorBatch)
	})
}

// purge runs batch, which deletes at most JanitorBatch rows, until one
// deletes fewer, ctx ends or the service stops, pausing JanitorPause
// between two. There is no cap on the number of batches: the janitor must
// keep up with the tokens that expire, and short-lived access tokens
// issued at a few hundred a second already expire faster than any fixed
// number of batches an hour can delete. ctx, which bounds the run, is what
// stops it.
func (s *Service) purge(ctx context.Context, batch func(context.Context) (int, error)) (int, error) {
	total := 0
	for {
		n, err := batch(ctx)
		total += n
		if err != nil {
			return total, err
		}
		if n < s.cfg.JanitorBatch {
			return total, nil
		}
		var pause <-chan time.Time
		if s.cfg.JanitorPause > 0 {
			pause = time.After(s.cfg.JanitorPause)
		} else {
			c := make(chan time.Time, 1)
			c <- time.Time{}
			pause = c
		}
		select {
		case <-s.stop:
			return total, nil
		case <-ctx.Done():
			return total, ctx.Err()
		case <-pause:
		}
	}
}

// janitorLoop purges every JanitorInterval. A run may last until the next
// one is due: one that has not caught up by then says so, and the next
// starts at once and goes on.
func (s *Service) janitorLoop() {
	s.every(s.cfg.JanitorInterval, s.cfg.JanitorInterval, "janitor", func(ctx context.Context) error {
		// Few rows, first: a run the tokens keep busy until its deadline
		// must not leave them for ever.
		_, err := s.PurgeUsageFlushes(ctx)
		if err == nil {
			var n int
			n, err = s.PurgeExpired(ctx)
			if n > 0 {
				s.cfg.Logger.Info("janitor deleted expired and revoked tokens", "count", n)
			}
		}
		if err == nil {
			var n int
			n, err = s.PurgeRevocations(ctx)
			if n > 0 {
				s.cfg.Logger.Info("janitor deleted expired revocation feed entries", "count", n)
			}
		}
		if errors.Is(err, context.DeadlineExceeded) {
			s.cfg.Logger.Warn("janitor ran for a whole interval and has more to delete; it goes on now", "interval", s.cfg.JanitorInterval)
			return nil
		}
		return err
	})
}
