package integration

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// Docker is not available here, so the compose file and the Dockerfile are
// checked by reading them: what a `docker compose up` relies on.
func TestComposeFile(t *testing.T) {
	b, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Build       any               `yaml:"build"`
			Environment map[string]string `yaml:"environment"`
			Ports       []string          `yaml:"ports"`
			DependsOn   map[string]struct {
				Condition string `yaml:"condition"`
			} `yaml:"depends_on"`
			Healthcheck struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
			Profiles []string `yaml:"profiles"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml is not valid YAML: %v", err)
	}
	pg, ok := c.Services["postgres"]
	if !ok || !strings.HasPrefix(pg.Image, "postgres:") || len(pg.Healthcheck.Test) == 0 {
		t.Fatalf("postgres service: %+v", pg)
	}
	app, ok := c.Services["pgstripe"]
	if !ok || app.Build == nil {
		t.Fatalf("pgstripe service missing or not built from this repo: %+v", app)
	}
	if dep := app.DependsOn["postgres"]; dep.Condition != "service_healthy" {
		t.Errorf("pgstripe must wait for a healthy postgres, has %+v", app.DependsOn)
	}
	db := app.Environment["DATABASE_URL"]
	if !strings.Contains(db, "@postgres:5432/") || !strings.Contains(db, pg.Environment["POSTGRES_USER"]+":"+pg.Environment["POSTGRES_PASSWORD"]) {
		t.Errorf("DATABASE_URL %q does not point at the postgres service with its credentials", db)
	}
	for _, k := range []string{"STRIPE_API_KEY", "PGSTRIPE_LISTEN", "PGSTRIPE_METRICS_LISTEN"} {
		if app.Environment[k] == "" {
			t.Errorf("pgstripe service lacks %s", k)
		}
	}
	if !strings.HasPrefix(app.Environment["PGSTRIPE_LISTEN"], "0.0.0.0:") {
		t.Errorf("in a container the proxy must listen on all interfaces, not %q", app.Environment["PGSTRIPE_LISTEN"])
	}
	if !strings.Contains(strings.Join(app.Ports, ","), "6543:6543") || !strings.Contains(strings.Join(app.Healthcheck.Test, " "), "/healthz") {
		t.Errorf("pgstripe ports %v / healthcheck %v", app.Ports, app.Healthcheck.Test)
	}
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	d := string(b)
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(string(mod))
	if goVersion == nil || !strings.Contains(d, "FROM golang:"+goVersion[1]) {
		t.Errorf("the build stage must use Go %v (go.mod)", goVersion)
	}
	for _, want := range []string{"CGO_ENABLED=1", "./cmd/pgstripe", "EXPOSE 6543 9464", `CMD ["serve"]`, "HEALTHCHECK"} {
		if !strings.Contains(d, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if n := len(regexp.MustCompile(`(?m)^FROM `).FindAllString(d, -1)); n < 2 {
		t.Errorf("Dockerfile has %d stages; want a build stage and a slim runtime stage", n)
	}
}
