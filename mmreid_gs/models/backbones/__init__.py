from .resnet_ibn import IBNBasicBlock, IBNBottleneck, ResNetIBN

__all__ = ['ResNetIBN', 'IBNBasicBlock', 'IBNBottleneck']
