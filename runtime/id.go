package runtime

import (
	"encoding/binary"
	"math/rand/v2"

	"github.com/google/uuid"
)

// newID returns a random (version 4) UUID for a request. It draws from
// math/rand/v2's generator (ChaCha8, seeded from the operating system),
// not from crypto/rand as uuid.New does: an ID must be unique, not secret,
// and a read from the operating system on every submit showed in the
// profile.
func newID() uuid.UUID {
	var id uuid.UUID
	binary.LittleEndian.PutUint64(id[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(id[8:], rand.Uint64())
	id[6] = id[6]&0x0f | 0x40 // version 4
	id[8] = id[8]&0x3f | 0x80 // the RFC 9562 variant
	return id
}
