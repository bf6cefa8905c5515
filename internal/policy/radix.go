package policy

// radixNode is a compressed trie over prefix-glob patterns, built once by
// NewACL and then only read. The zero value is an empty root.
type radixNode struct {
	label    string // edge label from the parent
	rule     *rule  // the prefix rule ending here, if any
	children []*radixNode
}

// insert adds key → r below n.
func (n *radixNode) insert(key string, r *rule) {
	for {
		if key == "" {
			n.rule = r
			return
		}
		c := n.child(key[0])
		if c == nil {
			n.children = append(n.children, &radixNode{label: key, rule: r})
			return
		}
		l := commonPrefix(c.label, key)
		if l < len(c.label) {
			// Split c: a new node holds the shared part.
			mid := &radixNode{label: c.label[:l], children: []*radixNode{c}}
			c.label = c.label[l:]
			for i, ch := range n.children {
				if ch == c {
					n.children[i] = mid
				}
			}
			c = mid
		}
		n, key = c, key[l:]
	}
}

// longest returns the rule of the longest inserted key that prefixes s.
func (n *radixNode) longest(s string) *rule {
	best := n.rule
	for s != "" {
		c := n.child(s[0])
		if c == nil || len(c.label) > len(s) || s[:len(c.label)] != c.label {
			break
		}
		s = s[len(c.label):]
		n = c
		if n.rule != nil {
			best = n.rule
		}
	}
	return best
}

func (n *radixNode) child(b byte) *radixNode {
	for _, c := range n.children {
		if c.label[0] == b {
			return c
		}
	}
	return nil
}

func commonPrefix(a, b string) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}
