package lease

// entry is one expiry-queue element: when (unix ns) and which lease.
type entry struct {
	due int64
	id  string
}

// dueHeap is a binary min-heap of entries ordered by due time. It is not
// safe for concurrent use; the Manager guards it with its mutex.
type dueHeap []entry

func (h *dueHeap) push(e entry) {
	*h = append(*h, e)
	q := *h
	i := len(q) - 1
	for i > 0 {
		p := (i - 1) / 2
		if q[p].due <= q[i].due {
			break
		}
		q[p], q[i] = q[i], q[p]
		i = p
	}
}

// pop removes and returns the earliest entry; h must not be empty.
func (h *dueHeap) pop() entry {
	q := *h
	top := q[0]
	n := len(q) - 1
	q[0] = q[n]
	q[n] = entry{}
	q = q[:n]
	*h = q
	h.down(0)
	return top
}

func (h dueHeap) down(i int) {
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h[r].due < h[l].due {
			m = r
		}
		if h[i].due <= h[m].due {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// heapify orders an arbitrary slice into a heap in O(n).
func (h dueHeap) heapify() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}
