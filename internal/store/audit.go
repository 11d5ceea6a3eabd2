package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
)

// ChainHash returns the hex SHA-256 that links e to the entry before it:
// the hash of prevHash and every field of e except Hash, each length-prefixed
// so that no two different events encode the same way.
func (e *AuditEvent) ChainHash(prevHash string) string {
	h := sha256.New()
	var n [8]byte
	field := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field(prevHash)
	binary.BigEndian.PutUint64(n[:], uint64(e.Seq))
	h.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(e.Time.UnixMilli()))
	h.Write(n[:])
	field(e.ID)
	field(e.Actor)
	field(e.Action)
	field(e.Target)
	field(e.RemoteAddr)
	field(string(e.Details))
	return hex.EncodeToString(h.Sum(nil))
}
