package tracer_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kmemprof/kmemprof/tracer"
)

// fakeSource records what Capture asks of it, in order.
type fakeSource struct {
	calls   []string
	stopErr error
}

func (s *fakeSource) Stats() (tracer.Stats, error) { return tracer.Stats{}, nil }

func (s *fakeSource) Stop() error {
	s.calls = append(s.calls, "stop")
	return s.stopErr
}

func (s *fakeSource) Snapshot() (*tracer.Snapshot, error) {
	s.calls = append(s.calls, "snapshot")
	return &tracer.Snapshot{Records: []tracer.Record{{Key: tracer.Key{Kind: tracer.KindSlab, Stack: 1}, BytesAlloc: 64}}}, nil
}

type usageSource struct{ *fakeSource }

func (s usageSource) Usage() (map[tracer.StackID]tracer.Usage, error) {
	s.calls = append(s.calls, "usage")
	return map[tracer.StackID]tracer.Usage{1: {Objects: uint64(len(s.calls)), Bytes: 64}}, nil
}

func TestCapture(t *testing.T) {
	closed := make(chan struct{})
	close(closed)
	t.Run("done", func(t *testing.T) {
		src := &fakeSource{}
		res, err := tracer.Capture(context.Background(), src, tracer.CaptureConfig{Done: closed})
		if err != nil {
			t.Fatal(err)
		}
		if res.Interrupted || res.Snapshot == nil || len(res.Snapshot.Records) != 1 || res.Series != nil {
			t.Errorf("result %+v", res)
		}
		if got := len(src.calls); got != 2 || src.calls[0] != "stop" || src.calls[1] != "snapshot" {
			t.Errorf("calls %v, want stop then snapshot", src.calls)
		}
	})
	t.Run("interrupted", func(t *testing.T) {
		// Ctrl-C: what was seen is still returned.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		src := &fakeSource{}
		res, err := tracer.Capture(ctx, src, tracer.CaptureConfig{Duration: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Interrupted || res.Snapshot == nil {
			t.Errorf("interrupted capture: %+v", res)
		}
	})
	t.Run("duration", func(t *testing.T) {
		src := &fakeSource{}
		res, err := tracer.Capture(context.Background(), src, tracer.CaptureConfig{Duration: 20 * time.Millisecond})
		if err != nil || res.Interrupted || res.Snapshot == nil {
			t.Errorf("capture of 20ms: %+v, %v", res, err)
		}
	})
	t.Run("growth", func(t *testing.T) {
		src := usageSource{&fakeSource{}}
		res, err := tracer.Capture(context.Background(), src, tracer.CaptureConfig{Duration: 100 * time.Millisecond, Interval: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		var usages int
		for i, c := range src.calls {
			if c == "usage" {
				usages++
			} else if c == "stop" && (i == 0 || src.calls[i-1] != "usage") {
				t.Errorf("calls %v: the last measurement is not taken as the capture ends", src.calls)
			}
		}
		if res.Series == nil || len(res.Series.Points) != usages || usages < 2 {
			t.Fatalf("series of %d points for %d measurements (calls %v)", len(res.Series.Points), usages, src.calls)
		}
		if g := res.Series.Growth()[1]; g.Objects == 0 {
			t.Errorf("a stack that rose at every measurement has no growth: %+v", g)
		}
	})
	t.Run("interval without usage", func(t *testing.T) {
		res, err := tracer.Capture(context.Background(), &fakeSource{}, tracer.CaptureConfig{Done: closed, Interval: time.Millisecond})
		if err != nil || res.Series != nil {
			t.Errorf("a source that cannot measure usage gave a series: %+v, %v", res, err)
		}
	})
	t.Run("before stop", func(t *testing.T) {
		// The self-check's hook runs while the source still traces: after
		// the last measurement, before Stop; its error is a note.
		src := usageSource{&fakeSource{}}
		res, err := tracer.Capture(context.Background(), src, tracer.CaptureConfig{Done: closed, Interval: time.Hour,
			BeforeStop: func() error {
				src.calls = append(src.calls, "check")
				return errors.New("self-check: reading /proc/slabinfo: permission denied")
			}})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"usage", "check", "stop", "snapshot"}
		if !slices.Equal(src.calls, want) {
			t.Errorf("calls %v, want %v", src.calls, want)
		}
		if len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "slabinfo") || res.Snapshot == nil {
			t.Errorf("a failed check: notes %q, snapshot %v; want its error as a note and the snapshot kept", res.Notes, res.Snapshot != nil)
		}
	})
	t.Run("stop fails", func(t *testing.T) {
		src := &fakeSource{stopErr: errors.New("detaching: busy")}
		res, err := tracer.Capture(context.Background(), src, tracer.CaptureConfig{Done: closed})
		if err == nil || res != nil {
			t.Errorf("a failed stop: %+v, %v; want the error", res, err)
		}
	})
}
