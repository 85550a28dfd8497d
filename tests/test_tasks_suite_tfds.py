"""TFDS against the official files for GLUE, MRQA, WinoGrande, Yelp, SciTail and PAWS-Wiki: TFDS's own
builders prepare each data set from the real samples in ../shared/data/samples (only what their download
manager returns is changed: local paths instead of URLs), and every task must give the same examples from
TFDS as from the files, split by split, EPT's splits included. GLUE's MRPC goes through TFDS's own
construction of dev from the MSR files and ``dev_ids``."""
import gzip
import os
import shutil
import tempfile

import pytest
from helpers import shared_path

tfds = pytest.importorskip("tensorflow_datasets")
seqio = pytest.importorskip("seqio")

from tasks import ept_splits, official_files  # noqa: E402
from tasks.glue import register_benchmarks  # noqa: E402
from tasks.sources import TaskSource  # noqa: E402
from tasks.specs import TASK_SPECS  # noqa: E402
from tasks.superglue import make_task, output_features  # noqa: E402

GLUE_CONFIGS = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "mnli_matched", "mnli_mismatched", "qnli", "rte")
MRQA_CONFIGS = official_files.MRQA_FILES  # all twelve sets


class LocalDownloads:
    """A download manager whose downloads are already here: ``answer(urls)`` gives their local paths."""

    def __init__(self, answer):
        self._answer = answer

    def download_and_extract(self, urls):
        return self._answer(urls)

    download = download_and_extract


def prepare(name, config, answer, data_dir):
    builder_cls = tfds.builder_cls(name)

    class Local(builder_cls, skip_registration=True):
        def _split_generators(self, dl_manager):
            return super()._split_generators(LocalDownloads(answer))

    Local.name = builder_cls.name
    builder = Local(config=config, data_dir=data_dir) if config else Local(data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))


def _mrqa_answer(plain, config):
    def answer(urls):  # by config: BioASQ's URL is a web page, not its file
        return {split: str(plain / f"{split}_{MRQA_CONFIGS[config]}.jsonl.gz") for split in urls}
    return answer


def _gunzipped_mrqa(samples, out):
    """TFDS's download manager gunzips MRQA's files; it reads them as plain text (``<split>_<file>``)."""
    out.mkdir()
    for folder, split in (("train", "train"), ("dev", "validation"), ("dev", "test")):
        for file in os.listdir(samples / "mrqa" / folder):
            with gzip.open(samples / "mrqa" / folder / file, "rb") as f:
                (out / f"{split}_{file}").write_bytes(f.read())
    return out


def _winogrande_release(samples, out):
    """TFDS expects every training size (xs ... xl); the samples hold xl, used for all."""
    release = out / "winogrande_1.1"
    release.mkdir(parents=True)
    for size in ("xs", "s", "m", "l", "xl"):
        shutil.copy(samples / "winogrande" / "train_xl.jsonl", release / f"train_{size}.jsonl")
    for file in ("dev.jsonl", "test.jsonl"):
        shutil.copy(samples / "winogrande" / file, release / file)
    return out


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    samples = shared_path("data", "samples")
    work = tmp_path_factory.mktemp("downloads")
    tfds_dir = str(tmp_path_factory.mktemp("tfds"))
    plain_mrqa = _gunzipped_mrqa(samples, work / "mrqa")
    winogrande = _winogrande_release(samples, work / "winogrande")
    (work / "yelp" / "yelp_review_polarity_csv").mkdir(parents=True)
    for split in ("train", "test"):
        shutil.copy(samples / "yelp_polarity" / f"{split}.csv", work / "yelp" / "yelp_review_polarity_csv")
    (work / "scitail").mkdir()
    os.symlink(samples / "scitail", work / "scitail" / "SciTailV1.1")
    (work / "paws").mkdir()
    os.symlink(samples / "paws_wiki", work / "paws" / "final")
    glue = samples / "glue"
    mrpc = {"dev_ids": str(glue / "MRPC" / "dev_ids"), "train": str(glue / "MRPC" / "train"),
            "test": str(glue / "MRPC" / "test")}
    from etils import epath
    with pytest.MonkeyPatch.context() as patch:  # TFDS leaves an empty temporary folder per builder
        patch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("tfds_tmp")))
        for config in GLUE_CONFIGS:
            prepare("glue", config, lambda urls: mrpc if isinstance(urls, dict) else str(glue), tfds_dir)
        for config in MRQA_CONFIGS:
            prepare("mrqa", config, _mrqa_answer(plain_mrqa, config), tfds_dir)
        prepare("winogrande", None, lambda urls: str(winogrande), tfds_dir)
        prepare("yelp_polarity_reviews", None, lambda urls: str(work / "yelp"), tfds_dir)
        prepare("sci_tail", None, lambda urls: epath.Path(work / "scitail"), tfds_dir)
        prepare("paws_wiki", "labeled_final_tokenized", lambda urls: {k: str(work / "paws") for k in urls}, tfds_dir)
    folders = {"glue": glue, "mrqa": samples / "mrqa", "winogrande": samples / "winogrande",
               "yelp_polarity": samples / "yelp_polarity", "scitail": samples / "scitail",
               "paws_wiki": samples / "paws_wiki"}
    return {"tfds": tfds_dir, "folders": {k: str(v) for k, v in folders.items()},
            "features": output_features(str(shared_path("fixtures", "t5_sentencepiece.model")))}


def examples(task, split):
    """Every example's (idx, inputs, targets, answers), sorted: TFDS stores examples in its own order."""
    rows = []
    for ex in task.get_dataset(sequence_length=None, split=split, shuffle=False).as_numpy_iterator():
        idx = ex.get("idx", b"")
        rows.append((idx.decode() if isinstance(idx, bytes) else int(idx), ex["inputs_pretokenized"].decode(),
                     ex["targets_pretokenized"].decode(), tuple(a.decode() for a in ex.get("answers", ()))))
    return sorted(rows)


def tasks_from(both, name):
    spec = TASK_SPECS[name]
    folder = both["folders"][spec.benchmark]
    return (make_task(spec, TaskSource(spec, tfds_data_dir=both["tfds"]), both["features"]),
            make_task(spec, TaskSource(spec, data_dir=folder), both["features"]))


CASES = ([f"glue_{c}_v002" for c in GLUE_CONFIGS] + [f"mrqa_{c}_v100" for c in MRQA_CONFIGS]
         + ["winogrande_v120", "taskless_yelp_polarity_v020", "scitail_v100", "taskless_paws_wiki_v110"])


@pytest.mark.parametrize("name", CASES)
def test_tfds_and_official_files_give_the_same_examples(both, name):
    from_tfds, from_files = tasks_from(both, name)
    assert "local files" in repr(from_files.source) and TASK_SPECS[name].tfds_name in repr(from_tfds.source)
    for split in TASK_SPECS[name].splits:
        got = examples(from_files, split)
        assert got == examples(from_tfds, split) and got, f"{name}:{split}"
    for split in ept_splits.offered(TASK_SPECS[name].splits):
        assert examples(from_files, split) == examples(from_tfds, split), f"{name}:{split}"


def test_mrpc_dev_is_cut_from_the_msr_train_file_by_dev_ids(both):
    glue = shared_path("data", "samples", "glue", "MRPC")
    dev_pairs = {tuple(line.split()) for line in (glue / "dev_ids").read_text().splitlines() if line.strip()}
    with open(glue / "train", encoding="utf-8-sig") as f:
        msr = [line.rstrip("\n").split("\t") for line in f][1:]
    in_dev = [row for row in msr if (row[1], row[2]) in dev_pairs]
    _, from_files = tasks_from(both, "glue_mrpc_v002")
    dev, train = examples(from_files, "validation"), examples(from_files, "train")
    assert len(dev) == len(in_dev) > 0 and len(train) == len(msr) - len(in_dev)
    assert {i for _, i, _, _ in dev} == {f"mrpc sentence1: {r[3]} sentence2: {r[4]}" for r in in_dev}


def test_registration_names_each_benchmarks_folder(both):
    names = register_benchmarks(("scitail",), {"scitail": both["folders"]["scitail"]}, vocab_path=None,
                                tfds_data_dir=None, ept_seed=0)
    assert names == ["scitail_v100", "taskless_scitail_v100"]
    assert "local files" in repr(seqio.get_mixture_or_task("scitail_v100").source)
    register_benchmarks(("scitail",), {}, vocab_path=None, tfds_data_dir=None, ept_seed=0)
    assert "sci_tail:1.0.0" in repr(seqio.get_mixture_or_task("scitail_v100").source)
