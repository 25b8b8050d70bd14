package main

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// rttSpec is a round-trip measurement: reps runs of warm untimed trips, then
// n timed ones, one after another.
type rttSpec struct {
	N    int `json:"n"`
	Warm int `json:"warm"`
	Reps int `json:"reps"`
}

// rttRun asks a yolk worker peer to measure one run of a variant.
type rttRun struct {
	Variant string `json:"variant"`
	N       int    `json:"n"`
	Warm    int    `json:"warm"`
}

// Round-trip variants.
const (
	rttRequest  = "request"   // yolk: RequestAgent; raw NATS: Request
	rttSendPair = "send-pair" // yolk: SendToAgent, the agent SendTo's back (egg's pattern)
)

// rttPayload is what each trip carries: about baseline.js's ping.
var rttPayload = []byte(`{"p":"` + strings.Repeat("x", 96) + `"}`)

// measureRTT makes warm untimed trips, then n timed ones, and returns the
// quantiles of the timed ones in ms. Each trip has 5 seconds.
func measureRTT(ctx context.Context, warm, n int, trip func(ctx context.Context) error) (Quantiles, error) {
	lat := make([]float64, 0, n)
	for i := range warm + n {
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		t0 := time.Now()
		err := trip(tctx)
		d := time.Since(t0)
		cancel()
		if err != nil {
			return Quantiles{}, fmt.Errorf("trip %d: %w", i, err)
		}
		if i >= warm {
			lat = append(lat, ms(d))
		}
	}
	return quantilesOf(lat), nil
}
