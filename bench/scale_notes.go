package main

// The notes under each table of the scale section: what limits the curve and
// what would bend it. The figures they quote come from the run.

func noteFanout(res *ScaleResults) string { return "" }

func noteConverge(res *ScaleResults) string { return "" }

func noteMemory(res *ScaleResults) string { return "" }

func noteFetches(res *ScaleResults) string { return "" }
