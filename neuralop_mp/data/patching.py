"""Multi-grid patching of a training run's data: upstream's processor, with its targets encoded
as it decodes them."""
import torch
from neuralop.data.transforms.data_processors import MGPatchingDataProcessor


class PatchingDataProcessor(MGPatchingDataProcessor):
    """Upstream's ``MGPatchingDataProcessor``, but the targets are encoded whenever it has an output
    normalizer. Upstream encodes them only when it has an input normalizer too, while it always
    decodes them: a config encoding the output alone (the built-in Darcy's) had its loss and test
    errors computed against ``y * std + mean``. With an input normalizer alone upstream's fails
    (it encodes the targets with the missing output normalizer); here the inputs are encoded alone.
    """

    def preprocess(self, data_dict, batched=True):
        data_dict = {k: v.to(self.device) for k, v in data_dict.items() if torch.is_tensor(v)}
        x, y = data_dict["x"], data_dict["y"]
        if self.in_normalizer is not None:
            x = self.in_normalizer.transform(x)
        if self.out_normalizer is not None:
            y = self.out_normalizer.transform(y)
        data_dict["x"], data_dict["y"] = self.patcher.patch(x, y)
        return data_dict
