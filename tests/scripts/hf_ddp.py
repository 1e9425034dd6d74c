"""Hugging Face Trainer under torchrun (DDP over gloo, CPU) with the nndoctor callback; rank 0 writes the
merged report. The Trainer shards the data itself (accelerate), so a clean run must stay silent.

    torchrun --nproc_per_node=2 hf_ddp.py REPORT.json [--lr LR]
"""
import sys
import tempfile

import torch
import transformers

from nndoctor.integrations.huggingface import NNDoctorCallback

report_path = sys.argv[1]
lr = float(sys.argv[sys.argv.index("--lr") + 1]) if "--lr" in sys.argv else 5e-4

torch.manual_seed(0)
config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32, max_position_embeddings=16, num_labels=2)
model = transformers.BertForSequenceClassification(config)
g = torch.Generator().manual_seed(0)
ids = torch.randint(3, 50, (128, 12), generator=g)
labels = (ids[:, 0] > 25).long()


class Pairs(torch.utils.data.Dataset):
    def __len__(self):
        return len(ids)

    def __getitem__(self, i):
        return {"input_ids": ids[i], "labels": labels[i]}


callback = NNDoctorCallback()
with tempfile.TemporaryDirectory() as out:
    args = transformers.TrainingArguments(output_dir=out, num_train_epochs=2, per_device_train_batch_size=16,
                                          learning_rate=lr, report_to=[], save_strategy="no", logging_strategy="no",
                                          use_cpu=True, disable_tqdm=True, ddp_backend="gloo")
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Pairs(), callbacks=[callback])
    trainer.train()
report = callback.report()  # on every rank: rank 0 receives the others' findings
if trainer.is_world_process_zero():
    with open(report_path, "w") as f:
        f.write(report.to_json())
