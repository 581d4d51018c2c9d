package emulator

import "testing"

func TestSeedCustomersOnly(t *testing.T) {
	e, err := New(Options{RateLimit: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SeedCustomers(250, DistUniform); err != nil {
		t.Fatal(err)
	}
	st := e.Stats()
	for table, n := range st.Objects {
		if table == "customers" && n != 250 || table != "customers" && n != 0 {
			t.Errorf("%s: %d objects", table, n)
		}
	}
	if st.Events != 0 {
		t.Errorf("seeding made %d events", st.Events)
	}
}
