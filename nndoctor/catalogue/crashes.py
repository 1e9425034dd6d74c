"""The crash catalogue: common PyTorch error messages, each with its usual cause, its usual fix and a search query
(built by ``search_query.py``).

"Google it", offline. Kept as data: one ``KnownError`` per message, in priority order (the first entry whose
pattern matches wins, so specific entries come before general ones). Every entry's ``example`` reproduces the
error on a CPU-only PyTorch (``tests/test_crash_catalogue.py`` runs each one); entries for messages only a GPU
or a cluster can produce (``needs``) are tested against ``texts``, the message as PyTorch writes it.

Like the rest of ``nndoctor.catalogue`` this module imports no torch: ``nndoctor codes --errors`` stays light.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class KnownError:
    id: str  # stable slug
    pattern: str  # regex searched (case-insensitively) in the exception's message
    cause: str  # one sentence
    fix: str  # one or two concrete sentences
    example: str  # code that raises it (on a CPU unless ``needs``); run by the tests
    texts: tuple[str, ...] = ()  # verbatim messages (other devices or versions) the pattern must also match
    needs: str = ""  # "" reproducible on CPU; "cuda" / "nccl": matched from ``texts`` only
    query: tuple[str, ...] = ()  # fixed phrases of the message, best first; the first one present is the query
    regex: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", re.compile(self.pattern, re.IGNORECASE))

    def matches(self, message: str) -> bool:
        return self.regex.search(message) is not None


K = KnownError

ERRORS: list[KnownError] = [
    # ----- autograd ------------------------------------------------------------------------------------------
    K("inplace-modified-saved-tensor", r"modified by an inplace operation",
      "An in-place operation (`+=`, `x[...] = ...`, `relu_`, `nn.ReLU(inplace=True)`) changed a tensor that "
      "autograd saved for the backward pass.",
      "Use the out-of-place form (`h = h + 1` instead of `h += 1`, `inplace=False`); "
      "`torch.autograd.set_detect_anomaly(True)` names the forward line.",
      "x = torch.randn(3, requires_grad=True)\nh = torch.sigmoid(x)\nh += 1\nh.sum().backward()"),
    K("backward-twice", r"backward through the graph a second time",
      "A graph whose saved tensors were freed by an earlier `backward()` is used again, usually through a hidden "
      "state or a cached tensor carried from one step to the next.",
      "Detach what is carried across steps (`h = h.detach()`) or compute it anew each step; use "
      "`retain_graph=True` only when you really backpropagate twice through the same graph.",
      "x = torch.randn(3, requires_grad=True)\ny = (x * x).sum()\ny.backward()\ny.backward()"),
    K("loss-without-grad", r"element 0 of tensors does not require grad",
      "The loss is not connected to any parameter that requires grad: it was detached (`.item()`, `.detach()`, "
      "`.numpy()`, `torch.tensor(loss)`), computed under `torch.no_grad()`, or every parameter is frozen.",
      "Compute the loss from the model's outputs with torch operations only, outside `no_grad`/`inference_mode`, "
      "and check that some parameters have `requires_grad=True`.",
      "loss = torch.tensor(nn.Linear(2, 1)(torch.randn(4, 2)).mean().item())\nloss.backward()",
      query=("element 0 of tensors does not require grad and does not have a grad_fn",)),
    K("backward-non-scalar", r"grad can be implicitly created only for scalar outputs",
      "`backward()` was called on a tensor with more than one element, usually a loss with `reduction='none'` "
      "that was never reduced.",
      "Reduce the loss to one number (`loss.mean()` or `loss.sum()`) before `backward()`, or pass `gradient=`.",
      "loss = nn.MSELoss(reduction='none')(torch.randn(4, requires_grad=True), torch.zeros(4))\nloss.backward()"),
    K("inplace-on-leaf", r"leaf Variable that requires grad (?:is being|has been) used in an in-place operation",
      "A parameter (or another leaf tensor that requires grad) is modified in place while autograd records.",
      "Change parameters under `with torch.no_grad():` (manual updates, initialisation), or use an out-of-place "
      "operation.",
      "w = nn.Parameter(torch.randn(3))\nw += 1"),
    K("inplace-on-multi-output-view", r"is a view and (?:is being|its base or another view of its base has been) "
      r"modified inplace",
      "A view returned by a function that returns several views (`unbind`, `split`, `chunk`) is modified in place.",
      "Replace the in-place operation with an out-of-place one (`a = a * 2`), or `.clone()` the view first.",
      "x = torch.randn(3, 4, requires_grad=True) * 1\nfor row in x.unbind():\n    row.mul_(2)",
      query=("is a view and is being modified inplace",)),
    K("inplace-on-no-grad-view", r"view was created in no_grad mode and is being modified inplace",
      "A view made inside `torch.no_grad()` is modified in place outside it, so autograd cannot tell whether to "
      "track the change.",
      "Move the view and the in-place operation both inside the `no_grad` block, or both outside it.",
      "x = torch.randn(3, requires_grad=True)\nwith torch.no_grad():\n    v = x[:2]\nv.mul_(2)"),
    K("numpy-of-grad-tensor", r"Can't call numpy\(\) on Tensor that requires grad",
      "`.numpy()` was called on a tensor that is part of the autograd graph (a model output or a loss).",
      "Use `t.detach().cpu().numpy()` (and keep the loss a tensor until after `backward()`).",
      "nn.Linear(2, 1)(torch.randn(4, 2)).numpy()"),
    K("nan-in-backward", r"Function '\w+' returned nan values in its \w+ output",
      "Anomaly detection caught a backward function producing NaN, typically `sqrt`, `log`, division or `pow` "
      "evaluated at 0 or below (the forward may still be finite).",
      "Add an epsilon or clamp the input of the named function (`torch.sqrt(x + 1e-8)`, `x.clamp_min(1e-8).log()`).",
      "x = torch.tensor([-1.0], requires_grad=True)\nwith torch.autograd.detect_anomaly():\n"
      "    torch.sqrt(x).sum().backward()",
      query=("returned nan values in its 0th output", "returned nan values in its")),
    K("integer-requires-grad", r"only Tensors of floating point (?:and complex )?dtype can require gradients",
      "`requires_grad=True` (or `nn.Parameter`) was asked of an integer tensor.",
      "Create the tensor as float (`torch.tensor(..., dtype=torch.float32)` or `.float()`) before asking for "
      "gradients.",
      "nn.Parameter(torch.arange(3))"),
    K("optimizer-empty-parameters", r"optimizer got an empty parameter list",
      "The optimizer was given no parameters: the model has none registered (layers kept in a plain list or dict), "
      "or a filter on `requires_grad` removed them all.",
      "Hold sub-layers in `nn.ModuleList`/`nn.ModuleDict`, build the optimizer after the model, and pass "
      "`model.parameters()`.",
      "torch.optim.SGD([], lr=0.1)"),
    K("optimizer-non-leaf", r"can't optimize a non-leaf Tensor",
      "The optimizer got a tensor computed from other tensors (e.g. `w.cuda()` or `w * 2` after "
      "`requires_grad=True`), not a leaf it can update.",
      "Move or scale the tensor first, then make it a leaf: `torch.randn(3, device=d).requires_grad_()` or "
      "`nn.Parameter(...)`.",
      "w = torch.randn(2, requires_grad=True) * 2\ntorch.optim.SGD([w], lr=0.1)"),
    K("forward-missing", r"is missing the required \"forward\" function",
      "The module defines no `forward` method, most often because of a typo in its name (`foward`, `froward`) or "
      "its indentation.",
      "Name the method `forward(self, ...)` and define it inside the class.",
      "class Net(nn.Module):\n    def foward(self, x):\n        return x\nNet()(torch.randn(2))",
      query=("is missing the required forward function",)),
    # ----- tensors and Python values ---------------------------------------------------------------------------
    K("item-of-several-elements",
      r"a Tensor with \d+ elements cannot be converted to Scalar|only one element tensors can be converted to "
      r"Python scalars",
      "`.item()`, `float()` or `int()` was applied to a tensor with more than one element (an unreduced loss or "
      "metric), or `torch.tensor()` got a list of tensors.",
      "Reduce first (`loss.mean().item()`), or use `.tolist()`; to combine tensors use `torch.stack(list)`.",
      "torch.randn(3).item()",
      texts=("only one element tensors can be converted to Python scalars",)),
    K("bool-of-tensor", r"Boolean value of Tensor with more than one value is ambiguous",
      "A tensor with several elements was used in `if`, `while`, `and`/`or` or `assert`.",
      "Reduce it to one truth value with `.any()` or `.all()`, or use `torch.where` for elementwise choices.",
      "if torch.randn(3) > 0:\n    pass"),
    K("ragged-sequences", r"expected sequence of length \d+ at dim \d+",
      "`torch.tensor()` got nested lists of different lengths (variable-length sequences or ragged samples).",
      "Pad the sequences to one length (`nn.utils.rnn.pad_sequence`) or keep them as a list of tensors.",
      "torch.tensor([[1, 2], [3]])"),
    K("numpy-object-array", r"can't convert np\.ndarray of type numpy\.object_",
      "A numpy array of Python objects (mixed types, strings, ragged rows, often a pandas column) was turned into "
      "a tensor.",
      "Convert the data to a numeric dtype first (`df.astype('float32').to_numpy()`), encoding strings as numbers.",
      "import numpy as np\ntorch.tensor(np.array([1, 'a'], dtype=object))",
      query=("can't convert np.ndarray of type numpy.object_",)),
    K("numpy-negative-stride", r"At least one stride in the given numpy array is negative",
      "`torch.from_numpy` got a flipped numpy view (`a[::-1]`, `np.flip`, OpenCV's BGR->RGB `img[..., ::-1]`).",
      "Copy the array first: `torch.from_numpy(a.copy())` (or `np.ascontiguousarray(a)`).",
      "import numpy as np\ntorch.from_numpy(np.arange(4)[::-1])"),
    # ----- shapes ----------------------------------------------------------------------------------------------
    K("mat1-mat2-shapes", r"mat1 and mat2 shapes cannot be multiplied",
      "A `Linear` layer's `in_features` differs from the size of the last dimension that reaches it (often a "
      "flatten after convolutions computed for another image size, or a missing `Flatten`).",
      "Set `in_features` to the feature size that arrives (the second number of mat1 in the message), add "
      "`nn.Flatten()` before the layer, or use `nn.LazyLinear`.",
      "nn.Linear(128, 10)(torch.randn(64, 784))",
      query=("mat1 and mat2 shapes cannot be multiplied",)),
    K("view-non-contiguous", r"view size is not compatible with input tensor's size and stride",
      "`.view()` was called on a non-contiguous tensor (after `transpose`, `permute` or slicing).",
      "Use `.reshape(...)`, or `.contiguous().view(...)`.",
      "torch.randn(3, 4).t().view(12)"),
    K("view-invalid-shape", r"shape '\[[^\]]*\]' is invalid for input of size",
      "`view`/`reshape` was asked for a shape whose element count differs from the tensor's, often a hard-coded "
      "batch size that the last, smaller batch does not have.",
      "Use `-1` for the batch dimension (`x.view(x.size(0), -1)`) and check the other sizes.",
      "torch.randn(10, 100).view(64, 10)"),
    K("conv-wrong-channels", r"weight of size .* expected input.* to have \d+ channels",
      "A convolution's `in_channels` differs from the channel dimension (dim 1) of its input: grayscale vs RGB, "
      "channels-last images `(N, H, W, C)`, or a previous layer's `out_channels`.",
      "Set `in_channels` to what arrives, convert the images, or permute channels-last input with "
      "`x.permute(0, 3, 1, 2)`.",
      "nn.Conv2d(3, 16, 3)(torch.randn(64, 1, 28, 28))",
      query=("Given groups=1, weight of size", "weight of size")),
    K("conv-input-dims", r"Expected \d+D \(unbatched\) or \d+D \(batched\) input to",
      "A convolution or pooling layer got an input with the wrong number of dimensions: flat vectors, or images "
      "without their channel dimension.",
      "Reshape the input to `(N, C, H, W)` for 2-d layers (`x.view(-1, 1, 28, 28)`, `x.unsqueeze(1)`).",
      "nn.Conv2d(1, 16, 3)(torch.randn(64, 784))"),
    K("kernel-larger-than-input",
      r"Kernel size can't be greater than actual input size|Output size is too small",
      "The spatial size shrank below the kernel (too many poolings or strided convolutions for this image size).",
      "Use larger inputs, fewer downsampling layers, padding, or `nn.AdaptiveAvgPool2d` before the head.",
      "nn.Conv2d(1, 2, 5)(torch.randn(1, 1, 3, 3))",
      query=("Kernel size can't be greater than actual input size", "Output size is too small"),
      texts=("Given input size: (16x1x1). Calculated output size: (16x0x0). Output size is too small",)),
    K("batchnorm-single-sample", r"Expected more than 1 value per channel when training",
      "Batch-norm in train mode got a batch of one sample (often the last batch of an epoch).",
      "Use `drop_last=True` in the DataLoader, a larger batch, or GroupNorm/LayerNorm; put the model in "
      "`eval()` for single-sample inference.",
      "nn.BatchNorm1d(10)(torch.randn(1, 10))",
      query=("Expected more than 1 value per channel when training",)),
    K("norm-wrong-features", r"running_mean should contain \d+ elements not \d+|Given normalized_shape=",
      "A normalisation layer was built for a different number of features or channels than arrives "
      "(`BatchNorm*d(num_features)`, `LayerNorm(normalized_shape)`).",
      "Set `num_features`/`normalized_shape` to the size of the input's channel (or last) dimension.",
      "nn.BatchNorm1d(10)(torch.randn(4, 20))",
      texts=("Given normalized_shape=[10], expected input with shape [*, 10], but got input of size[4, 20]",)),
    K("broadcast-size-mismatch", r"The size of tensor a \(\d+\) must match the size of tensor b \(\d+\)",
      "An elementwise operation got tensors whose shapes cannot broadcast (often outputs `(N, C)` against "
      "targets `(N,)`, or a sequence or batch dimension in the wrong place).",
      "Print both shapes just before the failing line and reshape one (`unsqueeze`, `view`, `permute`) so they "
      "match.",
      "torch.randn(64, 10) + torch.randn(64)"),
    K("bce-target-size",
      r"Target size \(.*\) must be the same as input size|Using a target size .* that is different to the "
      r"input size",
      "A binary cross-entropy loss got targets of another shape than the outputs, typically outputs `(N, 1)` and "
      "targets `(N,)`.",
      "Make them equal: `outputs.squeeze(1)` or `targets.float().unsqueeze(1)`.",
      "F.binary_cross_entropy_with_logits(torch.randn(64, 1), torch.rand(64))",
      texts=("Using a target size (torch.Size([64])) that is different to the input size (torch.Size([64, 1])) is "
             "deprecated. Please ensure they have the same size.",)),
    K("loss-batch-size", r"Expected input batch_size \(\d+\) to match target batch_size \(\d+\)",
      "Cross-entropy got a different number of outputs than targets: a `view`/`flatten` merged the batch with "
      "another dimension, or the outputs and targets come from different batches.",
      "Keep dim 0 the batch (`x.view(x.size(0), -1)`); for sequences flatten both sides alike "
      "(`logits.view(-1, C)` and `targets.view(-1)`).",
      "F.cross_entropy(torch.randn(32, 3), torch.zeros(64, dtype=torch.long))"),
    K("multi-target", r"(?:0D or )?1D target tensor expected, multi-target not supported",
      "Cross-entropy/NLL got class-index targets with an extra dimension (`(N, 1)`, or one-hot `(N, C)` as "
      "integers).",
      "Pass class indices of shape `(N,)`: `y.squeeze(1)`, or `y.argmax(1)` for one-hot targets.",
      "F.cross_entropy(torch.randn(32, 3), torch.zeros(32, 1, dtype=torch.long))",
      query=("1D target tensor expected, multi-target not supported",)),
    K("dim-out-of-range", r"Dimension out of range \(expected to be in range of",
      "An operation was asked for a dimension the tensor does not have (`softmax(dim=1)` on a 1-d tensor, a "
      "missing batch dimension).",
      "Check the tensor's `.dim()`; add the batch dimension (`x.unsqueeze(0)`) or use `dim=-1`.",
      "torch.randn(3).softmax(dim=1)"),
    K("rnn-input-size", r"input\.size\(-1\) must be equal to input_size",
      "An RNN/LSTM/GRU got features of another size than its `input_size`, often because the input is "
      "`(batch, seq, features)` without `batch_first=True`, or the other way round.",
      "Set `input_size` to the last dimension of the input and `batch_first=True` for `(N, L, H)` inputs.",
      "nn.LSTM(10, 20)(torch.randn(5, 3, 30))",
      query=("input.size(-1) must be equal to input_size",)),
    K("rnn-hidden-size", r"Expected hidden(?:\[\d\])? size",
      "The initial hidden state was built for another batch size (or layer count) than this batch, typically a "
      "hidden state kept from the previous batch when the last batch is smaller.",
      "Create the hidden state from the current batch (`x.size(0)` with `batch_first=True`) or omit it, and "
      "detach it across steps.",
      "nn.LSTM(10, 20, batch_first=True)(torch.randn(32, 5, 10), (torch.zeros(1, 64, 20), torch.zeros(1, 64, 20)))",
      texts=("Expected hidden size (1, 32, 20), got [1, 64, 20]",),
      query=("Expected hidden[0] size", "Expected hidden size")),
    K("cat-sizes", r"Sizes of tensors must match except in dimension",
      "`torch.cat` got tensors whose other dimensions differ (a skip connection after an odd-sized pooling, or "
      "features of different batch sizes).",
      "Make the non-concatenated dimensions equal (crop or pad, `F.interpolate`), or concatenate along the right "
      "dimension.",
      "torch.cat([torch.randn(64, 3), torch.randn(32, 3)], dim=1)"),
    K("stack-unequal-size", r"stack expects each tensor to be equal size",
      "Samples of different sizes were batched together (the DataLoader's default collate stacks them): images "
      "of different sizes or sequences of different lengths.",
      "Resize or crop images to one size in the dataset's transform; pad sequences in a `collate_fn` "
      "(`nn.utils.rnn.pad_sequence`).",
      "from torch.utils.data import default_collate\n"
      "default_collate([torch.randn(3, 32, 32), torch.randn(3, 28, 28)])"),
    K("expand-size", r"The expanded size of the tensor \(\d+\) must match the existing size",
      "`expand`/`expand_as` (or an assignment that broadcasts) was asked to grow a dimension that is not of size 1.",
      "Expand only size-1 dimensions (`unsqueeze` first), or use `repeat` to copy data along a dimension.",
      "torch.randn(5).expand(3, 10)"),
    K("negative-dimension", r"Trying to create tensor with negative dimension",
      "A layer or tensor was created with a negative size, usually a size computed from a config (e.g. "
      "`in_features - k` or a `-1` meant as 'infer').",
      "Print the computed sizes; `-1` is only allowed in `view`/`reshape`, not in constructors or `nn.Linear`.",
      "nn.Linear(-1, 3)"),
    # ----- dtypes ----------------------------------------------------------------------------------------------
    K("class-index-dtype",
      r"expected target dtype to be Long|expected scalar type Long but found|nll_loss\w*\" not implemented for",
      "Cross-entropy/NLL got class-index targets that are not int64 (float or int32 labels).",
      "Convert the labels with `y.long()` (once, in the dataset).",
      "F.cross_entropy(torch.randn(4, 3), torch.tensor([0.0, 1.0, 2.0, 0.0]))",
      texts=("expected scalar type Long but found Float",
             "\"nll_loss_forward_reduce_cuda_kernel_2d_index\" not implemented for 'Int'")),
    K("class-probabilities-dtype", r"Expected floating point type for target with class probabilities",
      "Cross-entropy got integer targets of the same shape as the outputs, which it reads as class probabilities "
      "(one-hot labels stored as integers).",
      "Pass class indices `y.argmax(1)` of shape `(N,)`, or float probabilities `y.float()`.",
      "F.cross_entropy(torch.randn(4, 3), torch.zeros(4, 3, dtype=torch.long))"),
    K("float-loss-integer-targets",
      r"result type Float can't be cast to the desired output type (?:Long|Int|Byte|Bool)|"
      r"Found dtype (?:Long|Int|Byte|Bool|Double) but expected Float",
      "A loss on floats (BCE, MSE) got integer (or float64) targets.",
      "Convert the targets with `y.float()` (binary labels and regression targets are float).",
      "F.binary_cross_entropy_with_logits(torch.randn(4), torch.ones(4, dtype=torch.long))",
      texts=("Found dtype Long but expected Float",)),
    K("bce-input-range", r"all elements of input should be between 0 and 1",
      "`BCELoss`/`binary_cross_entropy` got values outside [0, 1]: logits without a sigmoid.",
      "Use `nn.BCEWithLogitsLoss` on the raw logits (numerically stable), instead of `BCELoss`.",
      "F.binary_cross_entropy(torch.randn(4) * 3, torch.ones(4))",
      query=("all elements of input should be between 0 and 1",)),
    K("float-indices",
      r"Expected tensor for argument #1 'indices' to have one of the following scalar types|"
      r"tensors used as indices must be long|Expected dtype int32/int64 for index",
      "A float tensor was used as indices (token ids or labels for `nn.Embedding`, `gather`, indexing).",
      "Convert indices with `.long()` (e.g. token ids from a float array).",
      "nn.Embedding(10, 3)(torch.tensor([1.0, 2.0]))",
      query=("Expected tensor for argument #1 'indices' to have one of the following scalar types",)),
    K("one-hot-input", r"one_hot is only applicable to index tensor|Class values must be smaller than num_classes",
      "`F.one_hot` got non-int64 values or values outside [0, num_classes).",
      "Pass int64 class indices (`y.long()`) in [0, num_classes); shift 1-based labels with `y - 1`.",
      "F.one_hot(torch.tensor([1, 5]), 3)",
      texts=("one_hot is only applicable to index tensor of type LongTensor.",)),
    # ----- devices (before the dtype entries: the conv message names both) ---------------------------------------
    K("different-devices",
      r"Expected all tensors to be on the same device|is not on the expected device|"
      r"Input and parameter tensors are not at the same device|"
      r"Input type \([\w.]*cuda[\w.]*\) and weight type \(torch\.\w+\)|"
      r"Input type \(torch\.\w+\) and weight type \([\w.]*cuda",
      "The inputs, a part of the model or a tensor created in `forward` are on different devices (cpu vs cuda).",
      "Move the model once with `model.to(device)` and each batch with `x.to(device)`; register constant tensors "
      "as buffers and create new ones with `device=x.device`.",
      "nn.Linear(4, 2, device='meta')(torch.randn(3, 4))",
      texts=("Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!",
             "Expected all tensors to be on the same device, but got mat1 is on cpu, different from other tensors "
             "on cuda:0 (when checking argument in method wrapper_CUDA_addmm)",
             "Input type (torch.FloatTensor) and weight type (torch.cuda.FloatTensor) should be the same or input "
             "should be a MKLDNN tensor and weight is a dense tensor",
             "Input and parameter tensors are not at the same device, found input tensor at cuda:0 and parameter "
             "tensor at cpu"),
      query=("Expected all tensors to be on the same device", "is not on the expected device",
             "Input and parameter tensors are not at the same device")),
    K("input-weight-dtype",
      r"mat1 and mat2 must have the same dtype|expected m1 and m2 to have the same dtype|"
      r"Input type \(\w+\) and (?:bias|weight) type \(\w+\) should be the same|"
      r"RNN input dtype .* does not match weight dtype|expected scalar type (?:Float|Double|Half|BFloat16) but found|"
      r"Input type \(torch\.(?:Double|Half|BFloat16)Tensor\) and weight type \(torch\.\w+\)",
      "The input's dtype differs from the weights' (float64 inputs from numpy, integer inputs, or half inputs into a "
      "float32 model).",
      "Convert the inputs once with `x.float()` (`torch.from_numpy(a).float()`), or use `torch.autocast` for mixed "
      "precision.",
      "nn.Linear(2, 2)(torch.randn(3, 2, dtype=torch.float64))",
      texts=("Input type (double) and bias type (float) should be the same",
             "expected scalar type Float but found Double",
             "Input type (torch.DoubleTensor) and weight type (torch.FloatTensor) should be the same")),
    K("integer-input-to-float-op",
      r"not implemented for '(?:Long|Int|Short|Char|Byte|Bool)'|could not infer output dtype\. Input dtype must be "
      r"either a floating point",
      "An integer tensor reached an operation that needs floats (`softmax`, `mean`, `exp`, a layer's input).",
      "Convert with `.float()` where the integers become values (e.g. `images.float() / 255`).",
      "torch.arange(3).softmax(dim=0)",
      texts=("mean(): could not infer output dtype. Input dtype must be either a floating point or complex dtype. "
             "Got: Long",)),
    # ----- targets and indices ---------------------------------------------------------------------------------
    K("target-out-of-bounds", r"Target -?\d+ is out of bounds",
      "A class label is outside [0, C-1] for C output units (labels 1..C instead of 0..C-1, -1 for padding, or "
      "too few output units).",
      "Shift labels to 0..C-1, make the last layer output C = number of classes, or set `ignore_index` for "
      "padding labels.",
      "F.cross_entropy(torch.randn(4, 3), torch.tensor([0, 1, 2, 3]))"),
    K("index-out-of-range", r"index out of range in self",
      "An embedding (or `index_select`) got an index >= its size: token ids beyond the vocabulary, or a tokenizer "
      "that does not match the model.",
      "Make `num_embeddings` the vocabulary size (`len(tokenizer)`, `model.resize_token_embeddings`), and check "
      "`ids.max()`.",
      "nn.Embedding(10, 3)(torch.tensor([1, 12]))"),
    K("device-side-assert", r"device-side assert triggered",
      "A CUDA kernel's bounds check failed, nearly always an index out of range (class labels >= C or token ids "
      "beyond the vocabulary), reported at a later, unrelated line because CUDA runs asynchronously.",
      "Run the same step on the CPU (or with `CUDA_LAUNCH_BLOCKING=1`) to get the real error and line; check "
      "`targets.min()`, `targets.max()` against the number of classes.",
      "F.cross_entropy(torch.randn(4, 3, device='cuda'), torch.tensor([0, 1, 2, 3], device='cuda'))",
      texts=("CUDA error: device-side assert triggered\nCUDA kernel errors might be asynchronously reported at some "
             "other API call, so the stacktrace below might be incorrect.\nFor debugging consider passing "
             "CUDA_LAUNCH_BLOCKING=1\nCompile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.",),
      needs="cuda"),
    # ----- memory ----------------------------------------------------------------------------------------------
    K("out-of-memory", r"CUDA out of memory|out of memory|DefaultCPUAllocator: can't allocate memory",
      "One training step needs more memory than the device has (batch, activations, model and optimizer state), or "
      "a size computed wrongly asks for a huge tensor.",
      "Lower the batch size (with gradient accumulation), use mixed precision or activation checkpointing, free "
      "references kept across steps (`loss.item()` for logging); check the requested size if it is absurd.",
      "torch.empty(2 ** 50, dtype=torch.uint8)",
      query=("CUDA out of memory", "DefaultCPUAllocator: can't allocate memory", "out of memory"),
      texts=("CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of 79.15 GiB of which "
             "6.56 MiB is free. Including non-PyTorch memory, this process has 79.14 GiB memory in use. Of the "
             "allocated memory 78.21 GiB is allocated by PyTorch, and 212.95 MiB is reserved by PyTorch but "
             "unallocated.",)),
    # ----- CUDA, cuDNN, cuBLAS, NCCL ---------------------------------------------------------------------------
    K("torch-without-cuda", r"Torch not compiled with CUDA enabled|Found no NVIDIA driver on your system",
      "The code asks for a GPU, but this PyTorch build has no CUDA support or no NVIDIA driver is installed.",
      "Install a CUDA build of PyTorch (see pytorch.org's install selector), or pick the device with "
      "`'cuda' if torch.cuda.is_available() else 'cpu'`.",
      "torch.zeros(1, device='cuda')",
      texts=("Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU and installed a "
             "driver from http://www.nvidia.com/Download/index.aspx",)),
    K("cuda-checkpoint-on-cpu", r"Attempting to deserialize object on a CUDA device",
      "A checkpoint saved from GPU tensors is loaded on a machine without CUDA.",
      "Load it with `torch.load(path, map_location='cpu')` (or the device you train on).",
      "import io, torch.serialization as S\nsave_tag, S.location_tag = S.location_tag, lambda s: 'cuda:0'\n"
      "buf = io.BytesIO()\ntorch.save(torch.ones(2), buf)\nS.location_tag = save_tag\nbuf.seek(0)\ntorch.load(buf)"),
    K("numpy-of-device-tensor", r"can't convert \S+ device type tensor to numpy",
      "`.numpy()` was called on a tensor that lives on a GPU (or another non-CPU device).",
      "Copy it to the host first: `t.detach().cpu().numpy()`.",
      "torch.randn(3, device='meta').numpy()",
      texts=("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor to host memory "
             "first.",)),
    K("cublas-error", r"CUBLAS_STATUS_\w+",
      "cuBLAS failed inside a matrix multiply: usually out of GPU memory when creating its handle, a dtype or "
      "shape the GPU does not support, or an earlier asynchronous error (an index out of range) surfacing here.",
      "Rerun the step on the CPU or with `CUDA_LAUNCH_BLOCKING=1` to find the real error; check free memory and "
      "the matmul's shapes and dtypes.",
      "nn.Linear(784, 10).cuda()(torch.randn(64, 784, device='cuda'))",
      texts=("CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm( handle, opa, opb, m, n, k, "
             "&alpha, a, lda, b, ldb, &beta, c, ldc)`",
             "CUDA error: CUBLAS_STATUS_NOT_INITIALIZED when calling `cublasCreate(handle)`"),
      needs="cuda"),
    K("cudnn-error", r"cuDNN error: CUDNN_STATUS_\w+|CUDNN_STATUS_\w+",
      "cuDNN rejected or failed a convolution/RNN call: out of GPU memory, a non-contiguous input, or a cuDNN "
      "that does not match the PyTorch build.",
      "Rerun with `torch.backends.cudnn.enabled = False` or on the CPU to see the real error; make inputs "
      "`.contiguous()` and check free memory.",
      "nn.Conv2d(3, 16, 3).cuda()(torch.randn(64, 3, 224, 224, device='cuda'))",
      texts=("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR",
             "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if you passed in a non-contiguous "
             "input."),
      needs="cuda"),
    K("no-kernel-image", r"no kernel image is available for execution on the device",
      "The installed PyTorch was not built for this GPU's compute capability (a new GPU with an old wheel, or an "
      "old GPU a new wheel dropped).",
      "Install a PyTorch wheel built for your GPU (`torch.cuda.get_arch_list()` lists what it supports; newer "
      "GPUs need a newer CUDA wheel).",
      "torch.zeros(1, device='cuda') + 1",
      texts=("CUDA error: no kernel image is available for execution on the device\nCUDA kernel errors might be "
             "asynchronously reported at some other API call, so the stacktrace below might be incorrect.",),
      needs="cuda"),
    K("illegal-memory-access", r"an illegal memory access was encountered",
      "A CUDA kernel read or wrote outside its memory, most often through an index out of range reported late, "
      "or a bug in a custom kernel or extension.",
      "Rerun on the CPU or with `CUDA_LAUNCH_BLOCKING=1` to find the failing operation; check indices and "
      "custom CUDA code.",
      "torch.zeros(3, device='cuda')[torch.tensor([10 ** 9], device='cuda')]",
      texts=("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be asynchronously "
             "reported at some other API call, so the stacktrace below might be incorrect.",),
      needs="cuda"),
    K("nccl-timeout", r"Watchdog caught collective operation timeout",
      "A collective (all-reduce, broadcast) waited longer than the timeout: some rank did not reach it (it "
      "crashed, skipped a step, saw fewer batches, or ran code only rank 0 should run).",
      "Make every rank run the same collectives in the same order (equal batch counts with `drop_last`, no "
      "collectives inside `if rank == 0`); look at the other ranks' errors first.",
      "dist.all_reduce(torch.ones(1, device='cuda'))  # on rank 0 only",
      texts=("[Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1, OpType=ALLREDUCE, "
             "NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran for 600001 milliseconds before timing out.",),
      needs="nccl"),
    K("nccl-error", r"NCCL error|nccl(?:System|Internal|UnhandledCuda|InvalidUsage|Remote)Error",
      "NCCL, the library that moves gradients between GPUs, failed: a network or shared-memory problem between "
      "processes, mismatched tensors across ranks, or one rank dying.",
      "Rerun with `NCCL_DEBUG=INFO` to see the cause; in containers enlarge `/dev/shm` (`--shm-size`), and check "
      "that every rank calls the same collectives on tensors of the same size.",
      "dist.init_process_group('nccl')",
      texts=("NCCL error in: ../torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:1970, unhandled system error (run "
             "with NCCL_DEBUG=INFO for details), NCCL version 2.19.3\nncclSystemError: System call (e.g. socket, "
             "malloc) or external library call failed or device error.",),
      needs="nccl"),
    # ----- data loading ----------------------------------------------------------------------------------------
    K("dataloader-worker-died",
      r"DataLoader worker \(pid(?:\(s\))? [\d, ]+\) (?:exited unexpectedly|is killed by signal)|"
      r"out of shared memory|insufficient shared memory|unable to open shared memory object|"
      r"unable to write to file </torch_",
      "A DataLoader worker process died without raising a Python error: killed for using too much memory, a "
      "too-small shared memory (`/dev/shm`, typical in Docker), or a crash in native code.",
      "Retry with `num_workers=0` to see any real error; in Docker start with `--shm-size=8g` (or `--ipc=host`); "
      "reduce `num_workers` or the memory each sample holds.",
      "import os\nfrom torch.utils.data import DataLoader, Dataset\n"
      "class Dies(Dataset):\n    def __len__(self):\n        return 4\n    def __getitem__(self, i):\n"
      "        os._exit(1)\n"
      "next(iter(DataLoader(Dies(), batch_size=2, num_workers=1, multiprocessing_context='fork')))",
      texts=("DataLoader worker (pid 12345) is killed by signal: Bus error. It is possible that dataloader's workers "
             "are out of shared memory. Please try to raise your shared memory limit.",
             "unable to open shared memory object </torch_12345_2738137464_0> in read-write mode: Too many open "
             "files (24)")),
    K("collate-unsupported-type", r"default_collate: batch must contain tensors",
      "The dataset returns something the default collate cannot batch (a PIL image, a string path, None, a "
      "custom object).",
      "Return tensors from `__getitem__` (e.g. `transforms.ToTensor()` for images) or pass a `collate_fn`.",
      "from torch.utils.data import default_collate\ndefault_collate([object(), object()])"),
    K("unpicklable-for-workers", r"Can't pickle local object|Can't pickle <function <lambda>",
      "With worker processes started by spawn (Windows, macOS, `multiprocessing_context='spawn'`), the dataset, "
      "its transforms or `collate_fn` contain a lambda or a function defined inside another function.",
      "Define those functions at module top level, and guard the script's entry with "
      "`if __name__ == '__main__':`; or use `num_workers=0`.",
      "import pickle\ndef make():\n    return lambda x: x\npickle.dumps(make())",
      texts=("Can't pickle <function <lambda> at 0x7ff1c5762340>: attribute lookup <lambda> on __main__ failed",),
      query=("Can't pickle local object",)),
    K("dataloader-worker-error", r"Caught \w+ in DataLoader worker process",
      "The dataset's `__getitem__` (or the `collate_fn`) raised inside a worker; the original error is quoted "
      "below this line.",
      "Read the original traceback in the message, or set `num_workers=0` to get it in the main process; index "
      "the dataset by hand (`dataset[i]`) to reproduce.",
      "from torch.utils.data import DataLoader, Dataset\nclass Bad(Dataset):\n    def __len__(self):\n"
      "        return 4\n    def __getitem__(self, i):\n        return {'x': i}[i + 1]\n"
      "next(iter(DataLoader(Bad(), batch_size=4, num_workers=1, multiprocessing_context='fork')))"),
    # ----- checkpoints -----------------------------------------------------------------------------------------
    K("state-dict-mismatch", r"Error\(s\) in loading state_dict for",
      "The checkpoint's keys or shapes differ from the model's: a `module.` prefix saved from "
      "DataParallel/DDP, a `_orig_mod.` prefix from `torch.compile`, or a changed architecture.",
      "Strip the prefix (`{k.removeprefix('module.'): v for k, v in sd.items()}`), save `model.module.state_dict()`, "
      "or build the model with the checkpoint's sizes; `strict=False` only to load a part on purpose.",
      "m = nn.Sequential(nn.Linear(2, 2))\nm.load_state_dict({'module.0.weight': torch.randn(2, 2), "
      "'module.0.bias': torch.randn(2)})",
      query=("Error(s) in loading state_dict for",)),
    K("weights-only-load", r"Weights only load failed",
      "Since PyTorch 2.6 `torch.load` defaults to `weights_only=True` and refuses pickled Python objects (a "
      "whole model, an optimizer config, numpy or argparse values) in the checkpoint.",
      "Save and load `state_dict`s; for a trusted file pass `weights_only=False`, or allow the types with "
      "`torch.serialization.add_safe_globals([...])`.",
      "import io, argparse\nbuf = io.BytesIO()\ntorch.save({'args': argparse.Namespace(lr=0.1)}, buf)\n"
      "buf.seek(0)\ntorch.load(buf)"),
]

BY_ID: dict[str, KnownError] = {e.id: e for e in ERRORS}

# The kind of crash (and so the RUN code: shape RUN001, dtype RUN002, device RUN003, memory RUN004) of entries whose
# message the classifier's own patterns may not recognise (wording differs between PyTorch versions); others: RUN005.
KIND_OF: dict[str, str] = {
    **dict.fromkeys(["mat1-mat2-shapes", "view-invalid-shape", "conv-wrong-channels", "conv-input-dims",
                     "kernel-larger-than-input", "norm-wrong-features", "broadcast-size-mismatch", "bce-target-size",
                     "loss-batch-size", "multi-target", "dim-out-of-range", "rnn-input-size", "rnn-hidden-size",
                     "cat-sizes", "stack-unequal-size", "expand-size"], "shape"),
    **dict.fromkeys(["class-index-dtype", "class-probabilities-dtype", "float-loss-integer-targets", "float-indices",
                     "input-weight-dtype", "integer-input-to-float-op"], "dtype"),
    "different-devices": "device",
    "out-of-memory": "memory",
}


def match(message: str) -> KnownError | None:
    """The first catalogue entry whose pattern occurs in ``message``, or None."""
    for entry in ERRORS:
        if entry.matches(message):
            return entry
    return None
