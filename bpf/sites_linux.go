package bpf

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
)

// coolEvery is the time between two cooling rounds.
const coolEvery = time.Second

// siteStateSize is sizeof(struct site_state); the cooler reads allocs,
// frees and hot and writes hot and arm at their offsets.
const siteStateSize = int(unsafe.Sizeof(kmemprofSiteState{}))

const (
	offAllocs = int(unsafe.Offsetof(kmemprofSiteState{}.Allocs))
	offFrees  = int(unsafe.Offsetof(kmemprofSiteState{}.Frees))
	offHot    = int(unsafe.Offsetof(kmemprofSiteState{}.Hot))
	offArm    = int(unsafe.Offsetof(kmemprofSiteState{}.Arm))
)

// siteCooler turns hot call sites cold again when they stop growing, so that
// a site which rose and plateaued (a cache filled once, a process that opened
// many files and keeps them) stops paying for a stack walk per allocation.
// A cooled site is re-armed HotThreshold above its current outstanding count:
// if it grows again, it turns hot again at once.
type siteCooler struct {
	mem       *ebpf.Memory
	threshold int64
	buf       []byte
	last      map[uint32]int64 // outstanding count of each hot site at the last round
	// cooled counts the sites cooled; failed the rounds or updates that
	// could not read or write the call-site state (the sites concerned stay
	// hot, and keep paying a stack walk). Read while the cooler runs.
	cooled, failed atomic.Uint64
}

func newSiteCooler(m *ebpf.Map, threshold int64) (*siteCooler, error) {
	mem, err := m.Memory()
	if err != nil {
		return nil, fmt.Errorf("mapping call-site state: %w", err)
	}
	return &siteCooler{mem: mem, threshold: threshold, buf: make([]byte, mem.Size()), last: map[uint32]int64{}}, nil
}

// cool runs one round: a site that is hot and has not grown since the last
// round is cooled. Races with the kernel are harmless: the worst outcome is
// one more or one less round of stack walks for a site.
func (c *siteCooler) cool() {
	if _, err := c.mem.ReadAt(c.buf, 0); err != nil {
		c.failed.Add(1)
		return
	}
	le := binary.LittleEndian
	for i := 0; i+siteStateSize <= len(c.buf); i += siteStateSize {
		if le.Uint64(c.buf[i+offHot:]) == 0 { // not hot
			continue
		}
		idx := uint32(i / siteStateSize)
		out := int64(le.Uint64(c.buf[i+offAllocs:])) - int64(le.Uint64(c.buf[i+offFrees:]))
		prev, seen := c.last[idx]
		c.last[idx] = out
		if !seen || out > prev {
			continue // still growing (or just turned hot)
		}
		// hot and arm are adjacent: one write of both.
		var upd [16]byte
		le.PutUint64(upd[0:], 0)                                           // hot
		le.PutUint64(upd[offArm-offHot:], uint64(max(out, 0)+c.threshold)) // arm
		if _, err := c.mem.WriteAt(upd[:], int64(i+offHot)); err == nil {
			delete(c.last, idx)
			c.cooled.Add(1)
		} else {
			c.failed.Add(1)
		}
	}
}

// The cooler writes hot and arm in one 16-byte write: a compile error if
// they stop being adjacent.
var _ = [1]struct{}{}[offArm-offHot-8]
