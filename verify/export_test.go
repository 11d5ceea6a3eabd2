package verify

import "context"

// Joined returns how many requests have waited for another request's call
// to Jeton.
func Joined(v *Verifier) int64 { return v.joined.Load() }

// NewWithEventHook is New with a hook called after each revocation event
// is applied, with its seq.
func NewWithEventHook(ctx context.Context, cfg Config, onEvent func(seq int64)) (*Verifier, error) {
	return newVerifier(ctx, cfg, hooks{onEvent: onEvent})
}

// DenylistLen returns the number of remembered revocations.
func DenylistLen(v *Verifier) int { return v.deny.len() }

// CacheLen returns the number of cached answers.
func CacheLen(v *Verifier) int { return v.cache.len() }
