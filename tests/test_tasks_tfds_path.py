"""The default TFDS path, exercised for real: TFDS's own super_glue builder prepares ``super_glue/<config>:1.0.2``
from the official files (no download: only where it finds the files is changed), and the tasks read it
through seqio exactly as they would a downloaded copy. Both paths must give the same examples, strings and
few-shot draws."""
import json
import os
import tempfile

import pytest
from helpers import shared_path

tfds = pytest.importorskip("tensorflow_datasets")
seqio = pytest.importorskip("seqio")

import tasks.superglue as superglue  # noqa: E402
from tasks.sources import TaskSource  # noqa: E402
from tasks.specs import get_spec  # noqa: E402

FOLDERS = {"cb": "CB", "multirc": "MultiRC", "wsc.fixed": "WSC"}
SUBSET_LINES = {"multirc": 12}  # MultiRC's full train is 27k answers; a dozen paragraphs make the point


def prepare_tfds(config, files_dir, data_dir):
    """Runs TFDS's builder on ``files_dir``: the one change is where ``_split_generators`` finds the files."""
    from tensorflow_datasets.text import super_glue

    class LocalFiles(super_glue.SuperGlue, skip_registration=True):
        name = "super_glue"

        def _split_generators(self, dl_manager):
            folder = os.path.join(files_dir, FOLDERS[self.builder_config.name])
            return [tfds.core.SplitGenerator(name=split, gen_kwargs={"data_file": os.path.join(folder, file),
                                                                       "split": split})
                    for split, file in (("train", "train.jsonl"), ("validation", "val.jsonl"))]

    builder = LocalFiles(config=config, data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    shared = shared_path("data", "superglue")
    files_dir = tmp_path_factory.mktemp("files")
    for config, folder in FOLDERS.items():
        os.makedirs(files_dir / folder)
        for file in ("train.jsonl", "val.jsonl"):
            with open(shared / folder / file) as f:
                lines = f.readlines()[:SUBSET_LINES.get(config)]
            (files_dir / folder / file).write_text("".join(lines))
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    with pytest.MonkeyPatch.context() as patch:  # TFDS leaves an empty temporary folder per builder
        patch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("tfds_tmp")))
        for config in FOLDERS:
            prepare_tfds(config, str(files_dir), data_dir)
    return {"files": str(files_dir), "tfds": data_dir, "vocab": str(shared_path("fixtures", "t5_sentencepiece.model"))}


def both_paths(name, folders):
    spec = get_spec(name)
    features = superglue.output_features(folders["vocab"])
    from_tfds = superglue.make_task(spec, TaskSource(spec, tfds_data_dir=folders["tfds"]), features)
    from_files = superglue.make_task(spec, TaskSource(spec, data_dir=folders["files"]), features)
    assert spec.tfds_name in repr(from_tfds.source) and "local files" in repr(from_files.source)
    return from_tfds, from_files


def texts(task, split):
    """(idx, inputs, targets) of every example, sorted: TFDS stores examples in its own order."""
    rows = []
    for ex in task.get_dataset(sequence_length=None, split=split, shuffle=False).as_numpy_iterator():
        idx = tuple(int(ex[k]) for k in sorted(ex) if k.startswith("idx"))
        rows.append((idx, ex["inputs_pretokenized"].decode(), ex["targets_pretokenized"].decode()))
    return sorted(rows)


@pytest.mark.parametrize("name,split", [("super_glue_cb_v102", "validation"), ("super_glue_cb_v102", "train"),
                                        ("taskless_super_glue_multirc_v102", "train"),
                                        ("super_glue_wsc_v102", "train"),
                                        ("taskless_super_glue_wsc_v102_simple_eval", "validation")])
def test_tfds_and_local_files_give_the_same_examples(folders, name, split):
    from_tfds, from_files = both_paths(name, folders)
    expected = texts(from_files, split)
    assert expected and texts(from_tfds, split) == expected


@pytest.mark.parametrize("name", ["super_glue_cb_v102", "taskless_super_glue_multirc_v102",
                                  "super_glue_wsc_v102_simple_train"])
def test_few_shot_draws_agree_between_tfds_and_local_files(folders, name):
    from_tfds, from_files = both_paths(name, folders)
    for k in (4, 16):
        if name.endswith("multirc_v102") and k == 16:
            continue  # the MultiRC subset has 12 paragraphs
        expected = texts(from_files, f"train_k{k}")
        assert texts(from_tfds, f"train_k{k}") == expected
    if name.endswith("multirc_v102"):
        paragraphs = {idx[1] for idx, _, _ in texts(from_tfds, "train_k4")}  # (answer, paragraph, question)
        assert len(paragraphs) == 4
        with open(os.path.join(folders["files"], "MultiRC", "train.jsonl")) as f:
            rows = [json.loads(line) for line in f]
        answers = sum(len(q["answers"]) for r in rows if r["idx"] in paragraphs for q in r["passage"]["questions"])
        assert len(texts(from_tfds, "train_k4")) == answers
