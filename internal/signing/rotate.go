package signing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jetonhq/jeton/internal/store"
)

// errStale means the keys in the store changed between generating new keys
// and the transaction that stores them.
var errStale = errors.New("signing: keys changed during rotation")

// Rotate starts a key rotation for every algorithm that has a key signing
// now or waiting to: a new key is published at once and signs from
// ActiveAt = now + PrePublish; the keys it replaces retire at that instant
// and stay published until RetiredAt + Retain. Keys past their ExpiresAt
// are deleted. It runs in one UpdateSigningKeys transaction, audited as
// "signing_key.rotate" by actor from remoteAddr, with the new key IDs (and
// nothing of the keys themselves) in the details. It returns the new keys,
// without their private parts.
func (r *Ring) Rotate(ctx context.Context, actor, remoteAddr string) ([]store.SigningKey, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	activeAt := now.Add(r.cfg.PrePublish)
	need := liveAlgs(r.Keys(), now)
	for range 3 {
		// Generate outside the transaction (RSA takes a while), for the
		// algorithms this node knows of; if the store disagrees, retry.
		fresh := make([]store.SigningKey, 0, len(need))
		ids := make([]string, 0, len(need))
		for _, alg := range need {
			k, err := generate(r.cfg.MasterKey, alg, now)
			if err != nil {
				return nil, err
			}
			k.ActiveAt = activeAt
			fresh = append(fresh, k)
			ids = append(ids, k.ID)
		}
		details, _ := json.Marshal(map[string][]string{"keys": ids})
		ev := store.AuditEvent{Time: now, Actor: actor, Action: "signing_key.rotate", RemoteAddr: remoteAddr, Details: details}
		var view []store.SigningKey
		err := r.cfg.Store.UpdateSigningKeys(ctx, func(keys []store.SigningKey) ([]store.SigningKey, []string, error) {
			if got := liveAlgs(keys, now); !slices.Equal(got, need) {
				need = got
				return nil, nil, errStale
			}
			var put []store.SigningKey
			var del []string
			view = view[:0]
			for _, k := range keys {
				if !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt) {
					del = append(del, k.ID)
					continue
				}
				if slices.Contains(need, k.Alg) && (k.RetiredAt.IsZero() || k.RetiredAt.After(activeAt)) {
					k.RetiredAt = activeAt
					k.ExpiresAt = activeAt.Add(r.cfg.Retain)
					put = append(put, k)
				}
				view = append(view, k)
			}
			put = append(put, fresh...)
			view = append(view, fresh...)
			return put, del, nil
		}, ev)
		if errors.Is(err, errStale) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("signing: rotate keys: %w", err)
		}
		if err := r.apply(view, false); err != nil {
			return nil, err
		}
		for i := range fresh {
			fresh[i].Private = nil
		}
		return fresh, nil
	}
	return nil, fmt.Errorf("signing: rotate keys: %w", errStale)
}

// liveAlgs returns, in the order of Algorithms, the algorithms that have a
// key not retired at now (signing, or waiting to).
func liveAlgs(keys []store.SigningKey, now time.Time) []string {
	var out []string
	for _, alg := range Algorithms {
		for _, k := range keys {
			if k.Alg == alg && (k.RetiredAt.IsZero() || now.Before(k.RetiredAt)) {
				out = append(out, alg)
				break
			}
		}
	}
	return out
}
