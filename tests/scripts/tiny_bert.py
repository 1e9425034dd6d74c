"""A tiny BERT classifier built from a config (no download) and a token dataset it can learn: shared by the
Hugging Face integration tests, in one process and under torchrun."""
import torch
import transformers


class Pairs(torch.utils.data.Dataset):
    def __init__(self, ids: torch.Tensor, labels: torch.Tensor):
        self.ids, self.labels = ids, labels

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def build(samples: int = 64):
    """(model, dataset): the label is whether the first token is in the upper half of the vocabulary."""
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16, num_labels=2)
    model = transformers.BertForSequenceClassification(config)
    ids = torch.randint(3, 50, (samples, 12), generator=torch.Generator().manual_seed(0))
    return model, Pairs(ids, (ids[:, 0] > 25).long())
