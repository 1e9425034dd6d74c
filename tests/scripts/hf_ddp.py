"""Hugging Face Trainer under torchrun (DDP over gloo, CPU) with the nndoctor callback; rank 0 writes the
merged report. The Trainer shards the data itself (accelerate), so a clean run must stay silent.

    torchrun --nproc_per_node=2 hf_ddp.py REPORT.json [--lr LR]
"""
import sys
import tempfile

import transformers
from tiny_bert import build

from nndoctor.integrations.huggingface import NNDoctorCallback

report_path = sys.argv[1]
lr = float(sys.argv[sys.argv.index("--lr") + 1]) if "--lr" in sys.argv else 5e-4

model, dataset = build(samples=128)
callback = NNDoctorCallback()
with tempfile.TemporaryDirectory() as out:
    args = transformers.TrainingArguments(output_dir=out, num_train_epochs=2, per_device_train_batch_size=16,
                                          learning_rate=lr, report_to=[], save_strategy="no", logging_strategy="no",
                                          use_cpu=True, disable_tqdm=True, ddp_backend="gloo")
    trainer = transformers.Trainer(model=model, args=args, train_dataset=dataset, callbacks=[callback])
    trainer.train()
report = callback.report()  # on every rank: rank 0 receives the others' findings
if trainer.is_world_process_zero():
    with open(report_path, "w") as f:
        f.write(report.to_json())
