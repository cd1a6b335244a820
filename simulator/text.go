package simulator

import (
	"encoding/binary"
	"hash/fnv"
	"math"
	"math/rand/v2"
)

// firstWord opens every reply; it is one token in both o200k_base and
// cl100k_base.
const firstWord = "Lorem"

// words are the lorem-ipsum words that are one token each, with their
// leading space, in both o200k_base and cl100k_base. The tokenizers split
// text before every space-led word, so a reply of n pieces is n tokens.
var words = [...]string{
	" ipsum", " dolor", " sit", " amet", " consectetur", " adipiscing",
	" elit", " sed", " do", " eiusmod", " tempor", " incididunt", " ut",
	" labore", " et", " dolore", " magna", " aliqua", " enim", " ad",
	" minim", " veniam", " quis", " exercitation", " nisi", " ex", " ea",
	" commodo", " consequat", " aute", " in", " velit", " esse", " eu",
	" nulla", " sint", " non", " sunt", " culpa", " qui", " anim", " id",
	" est",
}

// seededRand returns a random source determined by the server's seed and
// the given parts, so that generated values depend on what was asked, not
// on the order in which concurrent requests arrive.
func seededRand(seed int64, parts ...string) *rand.Rand {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(seed))
	h.Write(b[:])
	for _, p := range parts {
		binary.LittleEndian.PutUint64(b[:], uint64(len(p)))
		h.Write(b[:])
		h.Write([]byte(p))
	}
	return rand.New(rand.NewPCG(h.Sum64(), uint64(seed)))
}

// replyPieces returns the tokens of a reply of n tokens, n ≥ 1: "Lorem",
// then random words, then a full stop when n ≥ 2. Each piece is one token
// and is one chunk of a streamed reply, as the providers stream tokens.
func replyPieces(r *rand.Rand, n int) []string {
	if n <= 0 {
		return nil
	}
	pieces := make([]string, 0, n)
	pieces = append(pieces, firstWord)
	for len(pieces) < n-1 {
		pieces = append(pieces, words[r.IntN(len(words))])
	}
	if n >= 2 {
		pieces = append(pieces, ".")
	}
	return pieces
}

// embedding returns a deterministic unit vector of dims values for input.
func embedding(r *rand.Rand, dims int) []float64 {
	v := make([]float64, dims)
	var norm float64
	for i := range v {
		v[i] = r.NormFloat64()
		norm += v[i] * v[i]
	}
	norm = math.Sqrt(norm)
	if norm == 0 {
		norm = 1
	}
	for i := range v {
		v[i] /= norm
	}
	return v
}
