package yolk_test

import (
	"os"
	"testing"

	"github.com/yolkgo/yolk"
)

// envTestApp names the app a test binary started as a child runs: the tests
// and examples run real masters, which start this test binary again as their
// agent and workers (YOLK_ROLE set).
const envTestApp = "YOLK_TEST_APP"

// testApps are the apps a child can run, by name.
var testApps = map[string]func() yolk.App{
	"greeter":  func() yolk.App { return greeter },
	"hooks":    hooksApp,
	"ticker":   ticker,
	"everyRun": everyRun,
}

func TestMain(m *testing.M) {
	if name := os.Getenv(envTestApp); name != "" && os.Getenv(yolk.EnvRole) != "" {
		app, ok := testApps[name]
		if !ok {
			os.Stderr.WriteString("no test app " + name + "\n")
			os.Exit(2)
		}
		yolk.Main(app())
	}
	os.Exit(m.Run())
}
