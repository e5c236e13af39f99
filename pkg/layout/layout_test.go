package layout

import (
	"reflect"
	"strings"
	"testing"
)

// Every path is under the data dir or the run dir, and no two name the
// same file, so no piece of skiff can write over another's.
func TestEveryPathIsUnderItsRootAndDistinct(t *testing.T) {
	l := New("/data")
	seen := map[string]string{}
	var walk func(v reflect.Value, name string)
	walk = func(v reflect.Value, name string) {
		switch v.Kind() {
		case reflect.Struct:
			for i := range v.NumField() {
				walk(v.Field(i), name+"."+v.Type().Field(i).Name)
			}
		case reflect.String:
			p := v.String()
			if name == ".DataDir" {
				return
			}
			if !strings.HasPrefix(p, "/data/") && !strings.HasPrefix(p, RunDir) {
				t.Errorf("%s = %s is neither under the data dir nor under %s", name, p, RunDir)
			}
			// Dirs of groups may equal a field of another group (Run.ContainerdDir).
			if other, ok := seen[p]; ok && !strings.HasSuffix(name, "Dir") {
				t.Errorf("%s and %s are both %s", other, name, p)
			}
			seen[p] = name
		}
	}
	walk(reflect.ValueOf(l), "")
	if l.Server.StateDB != "/data/server/db/state.db" || l.Agent.ImagesDir != "/data/agent/images" || l.HelpersDir != "/data/data" {
		t.Fatalf("the documented paths moved: %+v", l)
	}
}
