package heaptest_test

import (
	"testing"

	"github.com/pgstripe/pgstripe/heaptest"
)

var sink [][]byte

func TestPeakGrowthSeesHeldMemory(t *testing.T) {
	grew := heaptest.PeakGrowth(func() {
		for range 64 {
			sink = append(sink, make([]byte, 1<<20))
		}
	})
	sink = nil
	if grew < 60<<20 {
		t.Errorf("64 MB held: PeakGrowth says %d MB", grew>>20)
	}
	if idle := heaptest.PeakGrowth(func() {}); idle > 8<<20 {
		t.Errorf("nothing held: PeakGrowth says %d MB", idle>>20)
	}
}
