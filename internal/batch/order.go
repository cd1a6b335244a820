package batch

import "slices"

// orderer releases lines in input order when ordered, at once otherwise.
type orderer struct {
	ordered bool
	next    int
	held    map[int][]byte // nil entries: indices that produce no line
}

func newOrderer(ordered bool) *orderer { return &orderer{ordered: ordered, held: map[int][]byte{}} }

func (o *orderer) add(index int, line []byte) [][]byte {
	if !o.ordered {
		return [][]byte{line}
	}
	o.held[index] = line
	return o.release()
}

func (o *orderer) skip(index int) [][]byte {
	if !o.ordered {
		return nil
	}
	o.held[index] = nil
	return o.release()
}

func (o *orderer) release() [][]byte {
	var out [][]byte
	for {
		line, ok := o.held[o.next]
		if !ok {
			return out
		}
		delete(o.held, o.next)
		o.next++
		if line != nil {
			out = append(out, line)
		}
	}
}

// rest releases what is still held (an interrupted run), in index order.
func (o *orderer) rest() [][]byte {
	idx := make([]int, 0, len(o.held))
	for i := range o.held {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	var out [][]byte
	for _, i := range idx {
		if o.held[i] != nil {
			out = append(out, o.held[i])
		}
	}
	return out
}
