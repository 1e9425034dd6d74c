"""The model templates of nndoctor init: one small standard model per kind of input, per framework."""

TORCH_MODELS = {
    "tabular": '''
class Model(nn.Module):
    """An MLP with two hidden layers of 64 ReLU units. Lightweight on purpose: it trains in seconds, has few
    ways to fail, and sets the bar anything bigger must beat. No dropout, batch norm or weight decay yet:
    add regularisation once training scores pull away from validation scores."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(FEATURES, 64), nn.ReLU(),
            nn.Linear(64, 64), nn.ReLU(),
            nn.Linear(64, OUTPUTS),  # no activation: the loss takes raw scores, which is numerically stable
        )

    def forward(self, x):
        return self.layers(x)
''',
    "image": '''
class Model(nn.Module):
    """A small CNN: two 3x3 convolutions (16 and 32 channels) with pooling, then a 64-unit layer.
    Lightweight on purpose: it trains in seconds on a CPU and sets the bar anything bigger must beat.
    No augmentation, dropout or batch norm yet: add them one at a time, once this one fits."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(CHANNELS, 16, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),  # a fixed 4 x 4 grid whatever the image size: the head stays small
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(),
            nn.Linear(64, OUTPUTS),  # no activation: the loss takes raw scores, which is numerically stable
        )

    def forward(self, x):
        return self.head(self.features(x))
''',
    "sequence": '''
class Model(nn.Module):
    """A one-layer GRU with 64 units; its state after the last step goes to a linear head. Lightweight on
    purpose: a GRU trains reliably without warm-up or masking tricks, and sets the bar a transformer must beat."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(FEATURES, 64, batch_first=True)
        self.head = nn.Linear(64, OUTPUTS)  # no activation: the loss takes raw scores

    def forward(self, x):
        _, state = self.gru(x)  # state: (1, batch, 64), after the last step
        return self.head(state[-1])
''',
    "tokens": '''
class Model(nn.Module):
    """Token embeddings (32 wide) read by a one-layer GRU with 64 units; its state after the last token goes
    to a linear head. Lightweight on purpose: a GRU trains reliably without warm-up or masking tricks,
    and sets the bar a transformer must beat."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB_SIZE, 32)
        self.gru = nn.GRU(32, 64, batch_first=True)
        self.head = nn.Linear(64, OUTPUTS)  # no activation: the loss takes raw scores

    def forward(self, x):
        _, state = self.gru(self.embed(x))  # state: (1, batch, 64), after the last token
        return self.head(state[-1])
''',
}

KERAS_LAYERS = {
    "tabular": '''keras.Input((FEATURES,)),
layers.Dense(64, activation="relu"),
layers.Dense(64, activation="relu"),''',
    "image": '''keras.Input((CHANNELS, HEIGHT, WIDTH)),
layers.Conv2D(16, 3, padding="same", activation="relu", data_format="channels_first"),
layers.MaxPooling2D(2, padding="same", data_format="channels_first"),
layers.Conv2D(32, 3, padding="same", activation="relu", data_format="channels_first"),
layers.MaxPooling2D(2, padding="same", data_format="channels_first"),
layers.Flatten(),
layers.Dense(64, activation="relu"),''',
    "sequence": '''keras.Input((STEPS, FEATURES)),
layers.GRU(64),  # returns the state after the last step''',
    "tokens": '''keras.Input((STEPS,), dtype="int64"),
layers.Embedding(VOCAB_SIZE, 32),
layers.GRU(64),  # returns the state after the last token''',
}

KERAS_WHY = {
    "tabular": "An MLP with two hidden layers of 64 ReLU units",
    "image": "A small CNN: two 3x3 convolutions (16 and 32 channels) with pooling, then a 64-unit layer",
    "sequence": "A one-layer GRU with 64 units and a linear head",
    "tokens": "Token embeddings (32 wide) read by a one-layer GRU with 64 units, and a linear head",
}
