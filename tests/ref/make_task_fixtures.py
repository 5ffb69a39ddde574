"""Expected JSON task lists for tests/test_task.c, from upstream PXDesign's own YAML reader.

Runs pxdesign.utils.inputs.process_input_file (what `pxdesign infer` calls to write
<dump_dir>/<yaml_stem>.json; parse_yaml_to_json for the .yml file, which it refuses) on every tests/data/tasks/*.yaml|yml
and writes tests/data/tasks/<name>.expected.json; and PyYAML's safe_load of
tests/data/tasks/yaml_types.yaml (scalar typing, layouts) as yaml_types.expected.json. Development-time only: it needs the
upstream sources and venv under third_party/fullport (git-ignored), e.g.

  FULLPORT=third_party/fullport third_party/fullport/venv/bin/python tests/ref/make_task_fixtures.py

Run from the repository root: upstream resolves `target.file` against the current
directory and checks that it exists; a stand-in file is created at that path when the
real structure is not there yet (only existence is checked)."""
import glob, os, sys, shutil, tempfile

FP = os.environ.get("FULLPORT", os.path.abspath("third_party/fullport"))
os.environ.setdefault("PROTENIX_DATA_ROOT_DIR", os.path.join(FP, "ccd"))
sys.path.insert(0, os.path.join(FP, "src"))
from pxdesign.utils.inputs import parse_yaml_to_json, process_input_file  # noqa: E402

made = []
struct = "tests/data/structures/5o45.cif"
if not os.path.exists(struct):
    os.makedirs(os.path.dirname(struct), exist_ok=True)
    open(struct, "w").close()
    made.append(struct)
try:
    for y in sorted(glob.glob("tests/data/tasks/*.yaml") + glob.glob("tests/data/tasks/*.yml")):
        if "yaml_types" in y:
            continue
        stem = os.path.splitext(os.path.basename(y))[0]
        out = f"tests/data/tasks/{stem}.expected.json"
        if y.endswith(".yaml"):
            # what `pxdesign infer` runs: <dump_dir>/<stem>.json
            d = tempfile.mkdtemp()
            shutil.copyfile(process_input_file(y, out_dir=d), out)
            shutil.rmtree(d)
        else:
            # process_input_file takes .yaml only; the reader it calls takes any name
            parse_yaml_to_json(y, out)
        print(out)
    import json, yaml
    with open("tests/data/tasks/yaml_types.yaml") as f:
        doc = yaml.safe_load(f)
    with open("tests/data/tasks/yaml_types.expected.json", "w") as f:
        json.dump(doc, f, indent=1)
    print("tests/data/tasks/yaml_types.expected.json")
finally:
    for m in made:
        os.remove(m)
