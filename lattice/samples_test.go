package lattice_test

import (
	"math"

	"github.com/trellisdb/trellis/lattice"
)

// samples returns non-trivial values of every type (and an empty one of
// some), used as fuzz seeds and in table tests.
func samples() []lattice.Lattice {
	orset := &lattice.ORSet{}
	orset.Add(1, []byte("a"), []byte("b"), []byte("c"))
	orset.Remove([]byte("b"))
	cloudy := lattice.ORSetFromDots([][2]uint64{{1, 1}, {1, 3}, {2, 2}}, map[string][][2]uint64{"x": {{1, 3}, {2, 2}}, "y": {{1, 1}}})

	counter := &lattice.Counter{}
	_, _ = counter.Add(1, 5)
	_, _ = counter.Add(2, -7)
	_, _ = counter.Add(3, math.MaxInt64)

	vc := lattice.NewVClock(map[uint64]uint64{1: 2, 2: 1, 300: 70000})
	single := lattice.NewSingleCausal(lattice.NewVClock(map[uint64]uint64{1: 1, 2: 1}), []byte("left"))
	_, _ = single.Merge(lattice.NewSingleCausal(lattice.NewVClock(map[uint64]uint64{1: 1, 2: 1}), []byte("right")))
	_, _ = single.Merge(lattice.NewSingleCausal(lattice.NewVClock(map[uint64]uint64{3: 1}), []byte("other")))
	multi := lattice.NewMultiCausal(vc, map[string]lattice.VClock{"k": *lattice.NewVClock(map[uint64]uint64{1: 1})}, []byte("m"))
	_, _ = multi.Merge(lattice.NewMultiCausal(lattice.NewVClock(map[uint64]uint64{4: 4}), nil, []byte("n")))

	inner := &lattice.Map{}
	inner.Update("deep", &lattice.BoolOr{Value: true})
	m := &lattice.Map{}
	m.Update("lww", lattice.NewLWW(lattice.MakeTimestamp(1700000000000, 3), 9, []byte("v")))
	m.Update("map", inner)
	m.Update("counter", counter)

	return []lattice.Lattice{
		lattice.NewLWW(lattice.MakeTimestamp(1700000000000, 1), 7, []byte("hello")),
		lattice.NewLWW(0, 0, nil),
		lattice.NewLWW(5, 1, make([]byte, 300)),
		lattice.NewGSet([]byte("a"), []byte(""), []byte("zz")),
		&lattice.GSet{},
		orset,
		cloudy,
		lattice.NewOrderedSet([]byte("b"), []byte("a")),
		m,
		&lattice.Map{},
		&lattice.Max{Value: -1234567},
		lattice.NewMinPriority(-3, []byte("p")),
		&lattice.BoolOr{Value: true},
		counter,
		vc,
		single,
		multi,
	}
}

// sampleCells returns cells of both encodings.
func sampleCells() []lattice.Cell {
	var cells []lattice.Cell
	for _, v := range samples()[:3] {
		cells = append(cells, lattice.Cell{Value: v})
	}
	return append(cells,
		lattice.Cell{},
		lattice.Cell{Epoch: lattice.Stamp{TS: lattice.MakeTimestamp(1700000000000, 2), Writer: 3}},
		lattice.Cell{Epoch: lattice.Stamp{TS: 9, Writer: 1}, Value: samples()[8]},
	)
}
